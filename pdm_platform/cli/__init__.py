"""Console scripts: ``fleet-feed``, ``fleet-simulate`` and ``fleet-mqtt-bridge``."""
