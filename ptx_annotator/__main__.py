import sys

from ptx_annotator.cli import main

sys.exit(main())
