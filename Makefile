# Glioscope: `make run` starts the platform on this machine with a demo study; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PACKAGES := -e services/common -e services/gateway -e services/inference -e services/reporting -e services/nifti -e training
# Test-only tools: real Triton (pytriton wheel), the embedded Helm, manifest validation, API fuzzing.
TEST_PACKAGES := pytest nvidia-pytriton pypdf onnx helm-python-sdk kubernetes-validate schemathesis
APT_PACKAGES := orthanc orthanc-dicomweb dicom3tools dcmtk dcm2niix poppler-utils prometheus chromium

.PHONY: install system-deps frontend run test test-fast bench clean

system-deps:  ## Debian packages: Orthanc with DICOMweb, dciodvfy, dcmtk, pdftotext
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# Only promtool is needed from the prometheus package: never leave its server running.
	@command -v systemctl >/dev/null 2>&1 && systemctl stop prometheus 2>/dev/null || true

$(VENV)/.installed: services/*/pyproject.toml training/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PACKAGES) $(TEST_PACKAGES)
	touch $@

$(VENV)/.installed-train: $(VENV)/.installed
	# The CPU build of torch lies on this machine's disk; a plain `torch` would pull GBs of CUDA.
	$(PY) -m pip install -q "torch==2.13.0" onnx
	touch $@

install: system-deps $(VENV)/.installed

frontend:  ## the viewer: frontend/dist, served by the gateway at /
	cd frontend && npm ci --no-audit --no-fund && npm run build

run: install frontend  ## start Orthanc, gateway, reporting, nifti and a worker; load and segment the demo study
	$(PY) scripts/run_platform.py $(ARGS)

test: install frontend $(VENV)/.installed-train  ## the whole suite (unit, service, e2e, frontend) against the real services
	cd frontend && npx vitest run
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install  ## performance figures (docs/performance.md)
	$(PY) bench/bench_end_to_end.py

clean:
	rm -rf var test-artifacts
