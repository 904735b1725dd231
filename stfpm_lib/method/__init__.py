"""The STFPM method in pure torch (no files written): teacher/student pyramids (``model``), the loss
(``loss``), anomaly maps and image scores (``anomaly_map``), teacher weights with their sha256 (``weights``)."""
