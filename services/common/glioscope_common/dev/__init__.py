"""Dev and test tooling (local Orthanc/Triton launchers, the synthetic DICOM study): used by `make run`,
the tests and the benchmarks, never by a service. Not in the services' images: the wheel leaves this
subpackage out (services/common/pyproject.toml); an editable install (`make install`) has it."""
