"""The local web page and JSON endpoint (``ferlab serve``)."""
