"""The DICOMweb client the gateway and the worker share (STOW-RS, QIDO-RS, WADO-RS), plus Orthanc's REST API.

- `protocol`: the `DicomWeb` protocol, `StoreResult`, DICOM JSON values (`dicom_json_value`);
- `multipart`: multipart/related bodies (PS3.18 8.6.1.2);
- `transport`: the HTTP base (persistent client, retries, error mapping);
- `client`: `HttpDicomWeb` talks to any DICOMweb server (Orthanc's plugin in practice); `make_dicomweb`;
- `orthanc`: `OrthancRest`, Orthanc's own REST API;
- `files`: `FileDicomWeb` implements the same protocol on a folder (offline use, unit tests).

Both implementations speak DICOM JSON (PS3.18 F.2) for search results and metadata and return
`pydicom.Dataset` for retrieved instances.
"""
