pytest_plugins = ["flowkit.testing.pytest_plugin"]
