# Tests for the Python SDK (a package so that `unittest discover -t sdk/python` finds them).
