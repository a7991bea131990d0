"""The built-in job types, a module each. Every module here is loaded (tasks.jobtypes.load_catalog)."""
