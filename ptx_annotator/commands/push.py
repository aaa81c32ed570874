"""`ptx-annotate push STUDY_URL --annotator NAME`: a reader's mask back to the PACS as DICOM SEG (STOW-RS)."""

from __future__ import annotations

from ptx_annotator.commands._dicomweb_args import add_auth_argument


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "push", help="store a reader's mask on the study's DICOMweb server as a DICOM SEG (STOW-RS)",
        description="Write the reader's saved mask as a DICOM SEG (ContentCreatorName = the reader; the series "
                    "description gives the share of slices reviewed; the algorithm identification names the "
                    "proposer) and store it on the server. Each reader has one SEG series per study: a later "
                    "push adds the next instance of it and supersedes the earlier ones.")
    parser.add_argument("study_url", metavar="STUDY_URL", help="http(s)://HOST/.../dicom-web/studies/<StudyInstanceUID>")
    parser.add_argument("--annotator", required=True, help="whose mask to push")
    parser.add_argument("--store", default=None, metavar="DIR",
                        help="annotation store (default: the server's user store, see 'ptx-annotate worklist')")
    parser.add_argument("--allow-unreviewed", action="store_true",
                        help="push a mask that is mostly unreviewed proposal (labelled AUTOMATIC), as export allows")
    add_auth_argument(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from ptx_annotator.io import load_volume
    from ptx_annotator.io.dicomweb import StudyRef, default_store_dir, parse_study_url
    from ptx_annotator.io.dicomweb_cache import open_cached_or_retrieve
    from ptx_annotator.pacs import push_annotation
    from ptx_annotator.review.store import AnnotationStore

    ref = parse_study_url(args.study_url)
    cached = open_cached_or_retrieve(ref, args.dicomweb_auth)
    volume = load_volume(cached.folder)
    store = AnnotationStore(args.store or default_store_dir(ref.server))
    try:
        result = push_annotation(volume, store, args.annotator, auth=args.dicomweb_auth,
                                 ref=StudyRef(ref.server, ref.study_uid, cached.series_uid),
                                 allow_unreviewed=args.allow_unreviewed)
    finally:
        store.close()
    older = ""
    if result.deleted:
        older = f"; {result.deleted} earlier push(es) deleted"
    if result.kept_older:
        older += (f"; {result.kept_older} earlier push(es) stay on the server (it allows no DICOMweb DELETE), "
                  "superseded by this higher InstanceNumber")
    print(f"pushed the mask of '{result.reader}' to {result.ref.where()}: SEG series {result.series_uid} "
          f"instance #{result.instance_number} ({result.sop_uid}), {result.reviewed_slices}/{result.n_slices} "
          f"slices reviewed{older}")
    return 0
