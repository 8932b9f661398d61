"""bobosync: keeps on-duty status in BlackBerry AtHoc in step with BOBO book-on/book-off files."""

__version__ = "2.0.0"
