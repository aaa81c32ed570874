"""A phantom CT written as a small DICOM series (for tests that need a DICOM study on disk)."""

import numpy as np


def write_dicom_series(folder, case, description):
    """A minimal uncompressed CT series (one file per slice) of a phantom."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    volume, series_uid, study_uid = case.volume, generate_uid(), "1.2.826.0.1.3680043.8.498.1"
    for z in range(volume.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesDescription, ds.SeriesNumber = "CT", description, 1 if "right" in description else 2
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, study_uid + ".1"
        ds.ImagePositionPatient = [float(v) for v in volume.affine[:3] @ np.array([z, 0, 0, 1])]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [volume.spacing[1], volume.spacing[2]]
        ds.SliceThickness = volume.spacing[0]
        ds.Rows, ds.Columns = volume.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(volume.hu[z], dtype=np.int16).tobytes()
        ds.save_as(folder / f"{z:03d}.dcm", enforce_file_format=True)
