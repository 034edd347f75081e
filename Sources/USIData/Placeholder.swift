// The data pipeline (being written).
