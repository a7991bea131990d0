"""Starting Jobstream's processes: reuse the services that answer, embed the ones that don't."""
