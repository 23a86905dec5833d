"""Static files of the edgewatch web UI, served by the aggregator."""
