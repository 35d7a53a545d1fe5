"""Storage: the engine-neutral read protocol (``read``) and one folder per engine (``sqlite``)."""
