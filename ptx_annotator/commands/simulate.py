"""`ptx-annotate simulate CT_PATH OUT_DIR`: insert a simulated pneumothorax (and/or confounders) with its truth.

Writes the new CT (a DICOM series beside the source's headers, or ``ct.nii.gz`` when the source
is a NIfTI / NRRD file or the slices were re-acquired), ``truth_mask.nii.gz`` (pneumothorax air),
``confounder_mask.nii.gz`` (air that is not pneumothorax; ``--mediastinal-shift-mm`` moves the
mediastinum of a tension pneumothorax, CT and masks alike) and ``spec.json`` (every option used,
seeds included: the same spec gives the same case; ``--spec`` replays one).
"""

from __future__ import annotations

import json
import os


def register(subparsers) -> None:
    from ptx_annotator.synthetic.acquisition import KERNELS
    from ptx_annotator.synthetic.confounders import CONFOUNDERS
    from ptx_annotator.synthetic.shape import LOCATIONS, RIM_EXTENTS
    from ptx_annotator.synthetic.shift import SHIFT_MM_RANGE

    parser = subparsers.add_parser(
        "simulate", help="insert a simulated pneumothorax into a real CT; write the new CT and the truth mask")
    parser.add_argument("ct_path", help="DICOM series folder, NIfTI or NRRD chest CT")
    parser.add_argument("out_dir", help="output folder: dicom/*.dcm (or ct.nii.gz), truth_mask.nii.gz, spec.json")
    parser.add_argument("--side", choices=("right", "left", "both"), default="right",
                        help="patient side; 'both' is bilateral (default right)")
    parser.add_argument("--fraction", type=float, default=0.2,
                        help="pneumothorax volume as a share of the hemithorax, 0-0.9 (default 0.2)")
    parser.add_argument("--rim-mm", type=float, default=None,
                        help="a thin rim of this many mm of air instead of a fraction (1-3 mm: occult)")
    parser.add_argument("--rim-extent", choices=RIM_EXTENTS, default="surface",
                        help="a thin rim covers the whole surface facing --location, or only the apex")
    parser.add_argument("--location", choices=LOCATIONS, default="anterior", help="where the air gathers")
    parser.add_argument("--adhesions", type=float, default=0.0,
                        help="share of the wall held by adhesions, 0-0.7 (a loculated pneumothorax)")
    parser.add_argument("--fluid-share", type=float, default=0.0,
                        help="hydropneumothorax: dependent share of the pleural space that is fluid, 0-0.7")
    parser.add_argument("--mediastinal-shift-mm", type=float, default=None, metavar="MM",
                        help="tension pneumothorax: push the mediastinum MM mm away from the pneumothorax side "
                             f"({SHIFT_MM_RANGE[0]:g}-{SHIFT_MM_RANGE[1]:g} mm)")
    parser.add_argument("--no-pneumothorax", action="store_true", help="confounders only (a negative case)")
    parser.add_argument("--confounder", action="append", default=[], metavar="KIND[:SIDE]",
                        help=f"add air that is not pneumothorax (repeatable): {', '.join(CONFOUNDERS)}")
    parser.add_argument("--slice-mm", type=float, default=None, help="re-acquire at this slice thickness (0.6-8 mm)")
    parser.add_argument("--noise-hu", type=float, default=0.0, help="add noise of this SD (HU; low dose: 30-80)")
    parser.add_argument("--kernel", choices=KERNELS, default="standard", help="reconstruction kernel to imitate")
    parser.add_argument("--spec", metavar="SPEC.json", help="replay a spec.json (the other case options are ignored)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same result")
    parser.add_argument("--series", default=None, help="series UID when the folder holds several")
    parser.set_defaults(run=run)


def spec_from_args(args) -> dict:
    """The case spec the command-line options describe."""
    from ptx_annotator.errors import StudyError
    from ptx_annotator.synthetic.confounders import CONFOUNDERS

    if args.spec:
        try:
            with open(args.spec, encoding="utf-8") as handle:
                loaded = json.load(handle)
        except (OSError, ValueError) as error:
            raise StudyError(f"--spec '{args.spec}' could not be read as JSON ({error}); give a spec.json "
                             "written by simulate.") from None
        spec = loaded.get("spec", loaded) if isinstance(loaded, dict) else None  # simulate's record, or a bare spec
        if not isinstance(spec, dict):
            raise StudyError(f"--spec '{args.spec}' holds no case spec (a JSON object); give a spec.json written by "
                             "simulate.")
        return spec
    _check_ranges(args)
    spec: dict = {"pneumothorax": [], "confounders": []}
    if not args.no_pneumothorax:
        for index, side in enumerate(("right", "left") if args.side == "both" else (args.side,)):
            options = {"side": side, "seed": args.seed + index, "location": args.location,
                       "adhesions": args.adhesions, "fluid_share": args.fluid_share}
            if args.rim_mm is not None:
                options.update(rim_mm=args.rim_mm, rim_extent=args.rim_extent)
            else:
                options["fraction"] = args.fraction
            spec["pneumothorax"].append(options)
    for index, item in enumerate(args.confounder):
        kind, _, side = item.partition(":")
        if kind not in CONFOUNDERS or side not in ("", "right", "left"):
            raise StudyError(f"--confounder '{item}' is not KIND[:right|left] with KIND one of {', '.join(CONFOUNDERS)}.")
        spec["confounders"].append({"kind": kind, "side": side or "right", "seed": args.seed + 100 + index})
    if not spec["pneumothorax"] and not spec["confounders"]:
        raise StudyError("--no-pneumothorax needs at least one --confounder KIND: there is nothing to simulate.")
    if args.mediastinal_shift_mm is not None:
        spec["mediastinal_shift"] = {"shift_mm": _shift_mm(args), "seed": args.seed + 300}
    if args.slice_mm is not None or args.noise_hu > 0 or args.kernel != "standard":
        spec["acquisition"] = {"slice_mm": args.slice_mm, "noise_hu": args.noise_hu, "kernel": args.kernel,
                               "seed": args.seed + 200}
    return spec


def _check_ranges(args) -> None:
    """Each numeric option within its range, said with the option's own name and an example."""
    from ptx_annotator.errors import StudyError
    from ptx_annotator.synthetic.acquisition import NOISE_HU_MAX, SLICE_MM_RANGE
    from ptx_annotator.synthetic.pneumothorax import ADHESIONS_MAX, FLUID_SHARE_MAX, RIM_MM_RANGE

    checks = [("--adhesions", args.adhesions, 0.0, ADHESIONS_MAX, "share of the wall held by adhesions", "0.5"),
              ("--fluid-share", args.fluid_share, 0.0, FLUID_SHARE_MAX, "share of the pleural space that is fluid",
               "0.3"),
              ("--noise-hu", args.noise_hu, 0.0, NOISE_HU_MAX, "noise SD in HU", "40")]
    if args.rim_mm is None and not 0 < args.fraction <= 0.9:
        raise StudyError(f"--fraction {args.fraction:g} is outside (0, 0.9]: give the share of the hemithorax, "
                         "e.g. --fraction 0.2.")
    if args.rim_mm is not None:
        checks.append(("--rim-mm", args.rim_mm, *RIM_MM_RANGE, "mm of air in the rim", "2"))
    if args.slice_mm is not None:
        checks.append(("--slice-mm", args.slice_mm, *SLICE_MM_RANGE, "slice thickness in mm", "5"))
    for flag, value, low, high, what, example in checks:
        if not low <= value <= high:  # NaN fails too
            raise StudyError(f"{flag} {value:g} is outside [{low:g}, {high:g}]: give the {what}, e.g. {flag} {example}.")
    if args.seed < 0:
        raise StudyError(f"--seed {args.seed} is negative: give a seed of 0 or more, e.g. --seed 0.")


def _shift_mm(args) -> float:
    """``--mediastinal-shift-mm``, checked against the rest of the command line."""
    from ptx_annotator.errors import StudyError
    from ptx_annotator.synthetic.shift import SHIFT_MM_RANGE

    low, high = SHIFT_MM_RANGE
    value = args.mediastinal_shift_mm
    if not low <= value <= high:  # NaN fails too
        raise StudyError(f"--mediastinal-shift-mm {value:g} is outside [{low:g}, {high:g}] mm: give how far the "
                         f"mediastinum moves, e.g. --mediastinal-shift-mm 15.")
    if args.no_pneumothorax:
        raise StudyError("--mediastinal-shift-mm needs a pneumothorax to push the mediastinum: drop "
                         "--no-pneumothorax, or drop the shift.")
    if args.side == "both":
        raise StudyError("--mediastinal-shift-mm moves the mediastinum away from one side: give --side right or "
                         "--side left (with --side both it has no side to move away from).")
    return float(value)


def run(args) -> int:
    from ptx_annotator.atomic import atomic_path, write_json_atomic
    from ptx_annotator.errors import StudyError
    from ptx_annotator.io import load_volume, save_mask_nifti
    from ptx_annotator.io.ct_writer import write_ct_nifti, write_dicom_series
    from ptx_annotator.synthetic.cases import simulate_case

    spec = spec_from_args(args)
    from ptx_annotator.commands._common import refuse_output_inside_study

    refuse_output_inside_study(args.ct_path, args.out_dir)  # a simulated series never lands in the real study
    volume = load_volume(args.ct_path, args.series)
    try:
        case = simulate_case(volume, spec)
    except ValueError as error:
        where = f" in --spec '{args.spec}'" if args.spec else ""
        raise StudyError(f"The simulation options{where} are not valid: {error}. Fix that option and run again.") from None
    os.makedirs(args.out_dir, exist_ok=True)
    same_grid = case.volume.shape == volume.shape and volume.source_files
    if same_grid:
        written = write_dicom_series(volume, case.volume.hu, volume.source_files, os.path.join(args.out_dir, "dicom"))
        ct_out = f"{os.path.join(args.out_dir, 'dicom')} ({len(written)} DICOM files)"
    else:
        ct_out = str(write_ct_nifti(case.volume, case.volume.hu, os.path.join(args.out_dir, "ct.nii.gz")))
    for name, data in (("truth_mask", case.mask), ("confounder_mask", case.confounder_mask)):
        with atomic_path(os.path.join(args.out_dir, f"{name}.nii.gz"), ".nii.gz") as tmp:
            save_mask_nifti(data, case.volume.affine, tmp)
    record = {"spec": spec, "records": case.records, "truth_ml": round(case.volume_ml, 2),
              "source": str(args.ct_path)}
    write_json_atomic(os.path.join(args.out_dir, "spec.json"), json.loads(json.dumps(record, default=float)))
    for item in case.records:
        if "pneumothorax" in item:
            o = item["pneumothorax"]
            size = (f"{o['rim_mm']:g} mm rim ({o['rim_extent']})" if o.get("rim_mm") else
                    f"fraction {item['fraction_achieved']:.3f} of the hemithorax (requested {o['fraction']:.3f})")
            print(f"simulated {o['side']} pneumothorax: {size}, {o['location']}, {item['volume_ml']:.1f} mL, "
                  f"seed {o['seed']}")
        elif "mediastinal_shift" in item:
            o = item["mediastinal_shift"]
            print(f"mediastinal shift {o['shift_mm']:g} mm away from the {o['away_from']} "
                  f"(core moved {o['core_shift_mm']:.1f} mm); pneumothorax now {item['volume_ml_after']:.1f} mL")
        elif "confounder" in item:
            print(f"added {item['confounder']['kind']} ({item['confounder']['side']}): {item['volume_ml']:.1f} mL "
                  "of air that is not pneumothorax")
    print(f"pneumothorax truth {case.volume_ml:.1f} mL")
    print(f"CT: {ct_out}")
    print(f"truth mask: {os.path.join(args.out_dir, 'truth_mask.nii.gz')}; spec: {os.path.join(args.out_dir, 'spec.json')}")
    return 0
