"""Reading files into a store: loaders, splitting, OCR, PDF layout, incremental updates, calibration."""
