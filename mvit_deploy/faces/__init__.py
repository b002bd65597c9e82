"""The faces people see: the command line (``cli``), its terminal tables and progress line, the pytest
plugin, the strict reader of result JSONs (``results``) and the HTML / Markdown report (``report``)."""
