"""The faces people see: the command line (``cli``), its terminal tables and progress line, the pytest
plugin and the HTML / Markdown report (``report``)."""
