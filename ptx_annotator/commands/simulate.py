"""`ptx-annotate simulate CT_PATH OUT_DIR`: insert a simulated pneumothorax with its truth mask."""

from __future__ import annotations

import os


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate", help="insert a simulated pneumothorax into a real CT; write the new CT and the truth mask")
    parser.add_argument("ct_path", help="DICOM series folder, NIfTI or NRRD chest CT")
    parser.add_argument("out_dir", help="output folder: dicom/*.dcm (or ct.nii.gz) and truth_mask.nii.gz")
    parser.add_argument("--side", choices=("right", "left"), default="right", help="patient side (default right)")
    parser.add_argument("--fraction", type=float, default=0.2,
                        help="pneumothorax volume as a share of the hemithorax, 0-0.9 (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same result")
    parser.add_argument("--series", default=None, help="series UID when the folder holds several")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ptx_annotator.errors import StudyError
    from ptx_annotator.io import load_volume, save_mask_nifti
    from ptx_annotator.synthetic.pneumothorax import FRACTION_TOLERANCE, simulate_pneumothorax
    from ptx_annotator.io.ct_writer import write_ct_nifti, write_dicom_series

    if not 0 < args.fraction <= 0.9:
        raise StudyError(f"--fraction {args.fraction} is outside (0, 0.9]: give the share of the hemithorax, e.g. 0.2.")
    volume = load_volume(args.ct_path, args.series)
    result = simulate_pneumothorax(volume, side=args.side, fraction=args.fraction, seed=args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    if volume.source_files:
        written = write_dicom_series(volume, result.volume.hu, volume.source_files, os.path.join(args.out_dir, "dicom"))
        ct_out = f"{os.path.join(args.out_dir, 'dicom')} ({len(written)} DICOM files)"
    else:
        ct_out = str(write_ct_nifti(volume, result.volume.hu, os.path.join(args.out_dir, "ct.nii.gz")))
    mask_path = os.path.join(args.out_dir, "truth_mask.nii.gz")
    from ptx_annotator.atomic import atomic_path

    with atomic_path(mask_path, ".nii.gz") as tmp:
        save_mask_nifti(result.mask, volume.affine, tmp)
    print(f"simulated {result.side} pneumothorax: fraction {result.fraction_achieved:.3f} of the hemithorax "
          f"(requested {args.fraction:.3f}, tolerance {FRACTION_TOLERANCE}), volume {result.volume_ml:.1f} mL, "
          f"air {result.air_hu[0]:.0f} +/- {result.air_hu[1]:.0f} HU, seed {args.seed}")
    print(f"CT: {ct_out}")
    print(f"truth mask: {mask_path}")
    return 0
