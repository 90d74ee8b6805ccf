pytest_plugins = ["glioscope_common.testing"]
