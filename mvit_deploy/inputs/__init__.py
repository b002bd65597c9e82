"""What goes into a model: image files (``images``), the preprocessing conventions (``preprocess``),
the image domains with their parity and calibration sets (``datasets``), the shipped photos
(``calibration``) and class names (``labels``)."""
