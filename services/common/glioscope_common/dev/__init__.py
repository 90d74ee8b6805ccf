"""Dev and test tooling, used by `make run`, the tests and the benchmarks, never by a service: local process
plumbing (`processes`), the Orthanc and Triton launchers (`orthanc`, `triton`), the platform's own services as
local processes (`stack`), the synthetic DICOM study (`synthetic_study`) and the pytest plugin with the
service-tier fixtures and `require_*` helpers (`testing`). Not in the services' images: the
wheel leaves this subpackage out (services/common/pyproject.toml); the editable install of `make install` has it."""
