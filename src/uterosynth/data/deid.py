"""De-identification of DICOM data written by uterosynth, and a check that no identifier leaked.

:func:`scrub_dataset` applies the DICOM PS3.15 Annex E *Basic Application Level
Confidentiality Profile* to a pydicom dataset, with the actions of that profile's table
E.1-1: identifying attributes are removed (``X``) or emptied (``Z``, where the attribute is
Type 2 in common IODs and must stay present), UIDs are replaced by fresh ones (``U``, the same
new UID for the same old UID within one ``uid_map``), and, beyond the table, every private
attribute and every remaining date/time (VR DA, DT, TM) is removed, recursively in sequences.
Finally ``PatientIdentityRemoved = YES`` and ``DeidentificationMethod`` record what was done.

pydicom ships no confidentiality profile and pydicom's deid companion packages are not
dependencies of this project, so the attribute list is kept here; it covers the attributes of
table E.1-1 that occur in MR and secondary-capture objects.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, MutableMapping
from pathlib import Path

__all__ = [
    "EMPTY_ATTRIBUTES",
    "REMOVE_ATTRIBUTES",
    "UID_ATTRIBUTES",
    "DEIDENTIFICATION_METHOD",
    "find_identifiers",
    "scrub_dataset",
]

DEIDENTIFICATION_METHOD = "DICOM PS3.15 E.1 Basic Profile (uterosynth)"

#: Type 2 in patient/study modules: kept present but emptied (action Z).
EMPTY_ATTRIBUTES: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)

#: Removed (action X / X/Z / X/D collapsed to removal).
REMOVE_ATTRIBUTES: tuple[str, ...] = (
    "AcquisitionDate", "AcquisitionDateTime", "AcquisitionTime", "AcquisitionComments", "ActualHumanPerformersSequence",
    "AdditionalPatientHistory", "AdmissionID", "AdmittingDate", "AdmittingDiagnosesCodeSequence",
    "AdmittingDiagnosesDescription", "AdmittingTime", "Allergies", "BranchOfService", "CommentsOnThePerformedProcedureStep",
    "ConfidentialityConstraintOnPatientDataDescription", "ContentCreatorName", "ContentDate", "ContentTime",
    "ContributionDateTime", "CountryOfResidence", "CurrentPatientLocation", "CurveDate", "CurveTime",
    "CustodialOrganizationSequence", "DerivationDescription", "DetectorID", "DeviceSerialNumber", "DeviceUID",
    "DigitalSignaturesSequence", "DischargeDiagnosisDescription", "DistributionAddress", "DistributionName",
    "EthnicGroup", "FillerOrderNumberImagingServiceRequest", "FrameComments", "GantryID", "GeneratorID",
    "HumanPerformerName", "HumanPerformerOrganization", "IconImageSequence", "IdentifyingComments", "ImageComments",
    "ImagePresentationComments", "ImagingServiceRequestComments", "Impressions", "InstanceCreationDate",
    "InstanceCreationTime", "InstanceCreatorUID", "InstitutionAddress", "InstitutionCodeSequence", "InstitutionName",
    "InstitutionalDepartmentName", "InsurancePlanIdentification", "IntendedRecipientsOfResultsIdentificationSequence",
    "InterpretationApproverSequence", "InterpretationAuthor", "InterpretationDiagnosisDescription",
    "InterpretationIDIssuer", "InterpretationRecorder", "InterpretationText", "InterpretationTranscriber",
    "IssuerOfAdmissionID", "IssuerOfPatientID", "IssuerOfServiceEpisodeID", "LastMenstrualDate", "MedicalAlerts",
    "MedicalRecordLocator", "MilitaryRank", "ModifiedAttributesSequence", "ModifyingDeviceID",
    "ModifyingDeviceManufacturer", "NameOfPhysiciansReadingStudy", "NamesOfIntendedRecipientsOfResults", "Occupation",
    "OperatorIdentificationSequence", "OperatorsName", "OrderCallbackPhoneNumber", "OrderEnteredBy",
    "OrderEntererLocation", "OriginalAttributesSequence", "OtherPatientIDs", "OtherPatientIDsSequence",
    "OtherPatientNames", "OverlayDate", "OverlayTime", "ParticipantSequence", "PatientAddress", "PatientAge",
    "PatientBirthName", "PatientBirthTime", "PatientComments", "PatientInstitutionResidence",
    "PatientInsurancePlanCodeSequence", "PatientMotherBirthName", "PatientPrimaryLanguageCodeSequence",
    "PatientReligiousPreference", "PatientSexNeutered", "PatientSize", "PatientState", "PatientTelephoneNumbers",
    "PatientTransportArrangements", "PatientWeight", "PerformedLocation", "PerformedProcedureStepDescription",
    "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime", "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "PerformedStationAETitle",
    "PerformedStationGeographicLocationCodeSequence", "PerformedStationName", "PerformedStationNameCodeSequence",
    "PerformingPhysicianIdentificationSequence", "PerformingPhysicianName", "PersonAddress", "PersonIdentificationCodeSequence",
    "PersonName", "PersonTelephoneNumbers", "PhysicianApprovingInterpretation", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "PhysiciansReadingStudyIdentificationSequence",
    "PlacerOrderNumberImagingServiceRequest", "PreMedication", "PregnancyStatus", "ProtocolName", "ReasonForStudy",
    "ReferencedImageSequence", "ReferencedPatientAliasSequence", "ReferencedPatientPhotoSequence",
    "ReferencedPatientSequence", "ReferencedPerformedProcedureStepSequence", "ReferencedStudySequence",
    "ReferringPhysicianAddress", "ReferringPhysicianIdentificationSequence", "ReferringPhysicianTelephoneNumbers",
    "RegionOfResidence", "RequestAttributesSequence", "RequestedContrastAgent", "RequestedProcedureComments",
    "RequestedProcedureDescription", "RequestedProcedureID", "RequestedProcedureLocation", "RequestingPhysician",
    "RequestingService", "ResponsibleOrganization", "ResponsiblePerson", "ResultsComments", "ResultsDistributionListSequence",
    "ResultsIDIssuer", "ScheduledHumanPerformersSequence", "ScheduledPatientInstitutionResidence",
    "ScheduledPerformingPhysicianIdentificationSequence", "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepEndDate", "ScheduledProcedureStepEndTime", "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime", "ScheduledStationAETitle",
    "ScheduledStationGeographicLocationCodeSequence", "ScheduledStationName", "ScheduledStationNameCodeSequence",
    "ScheduledStudyLocation", "ScheduledStudyLocationAETitle", "SeriesDate", "SeriesTime", "ServiceEpisodeDescription",
    "ServiceEpisodeID", "SmokingStatus", "SourceImageSequence", "SpecialNeeds", "StationName", "StudyComments",
    "TextComments", "TextString", "TopicAuthor", "TopicKeywords", "TopicSubject", "TopicTitle", "VerifyingObserverName",
    "VerifyingObserverSequence", "VerifyingOrganization", "VisitComments",
)

#: Replaced by fresh UIDs (action U), consistently within one ``uid_map``.
UID_ATTRIBUTES: tuple[str, ...] = (
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "SynchronizationFrameOfReferenceUID",
    "ReferencedSOPInstanceUID", "MediaStorageSOPInstanceUID", "IrradiationEventUID", "ConcatenationUID",
    "DimensionOrganizationUID", "StorageMediaFileSetUID", "TargetUID", "TransactionUID",
)

_DATE_TIME_VRS = {"DA", "DT", "TM"}


def scrub_dataset(ds, *, uid_map: MutableMapping[str, str] | None = None):
    """De-identify a pydicom ``Dataset`` in place (and return it).

    Args:
        ds: a ``pydicom.Dataset`` (its ``file_meta`` is scrubbed too).
        uid_map: old UID → new UID; pass the same dict for every file of a series/study so
            references stay consistent. A fresh dict is used when ``None``.

    Returns:
        The same dataset, carrying ``PatientIdentityRemoved = "YES"`` and ``DeidentificationMethod``.
    """
    from pydicom.uid import generate_uid

    uid_map = {} if uid_map is None else uid_map
    ds.remove_private_tags()

    def visit(dataset) -> None:
        for elem in list(dataset):
            keyword = elem.keyword
            if keyword in EMPTY_ATTRIBUTES:
                elem.value = ""
            elif keyword in REMOVE_ATTRIBUTES or (elem.VR in _DATE_TIME_VRS and keyword not in EMPTY_ATTRIBUTES):
                del dataset[elem.tag]
            elif keyword in UID_ATTRIBUTES and elem.value:
                values = elem.value if elem.VM > 1 else [elem.value]
                new = [uid_map.setdefault(str(v), generate_uid()) for v in values]
                elem.value = new if elem.VM > 1 else new[0]
            elif elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif elem.VR == "PN" and elem.value:
                del dataset[elem.tag]  # any other person name (e.g. in a private-looking public tag)

    visit(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta and "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    return ds


def _contents(path: Path) -> Iterable[bytes]:
    data = path.read_bytes()
    yield data
    if data[:2] == b"\x1f\x8b":  # gzip (e.g. .nii.gz): check the decompressed bytes too
        try:
            unpacked = gzip.decompress(data)
        except (OSError, EOFError):
            unpacked = b""
        yield unpacked


def find_identifiers(folder: str | Path, identifiers: Iterable[str]) -> list[tuple[str, str]]:
    """Every ``(file, identifier)`` where an identifier occurs in the bytes of a file under ``folder``.

    The search is case-insensitive over the UTF-8 bytes of each file and, for gzip files, of
    the decompressed content. Use it to check an output folder before sharing it.
    """
    needles = [(s, s.lower().encode("utf-8")) for s in identifiers if s]
    hits = []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file():
            continue
        for blob in _contents(path):
            low = blob.lower()
            hits += [(str(path), s) for s, n in needles if n in low and (str(path), s) not in hits]
    return hits
