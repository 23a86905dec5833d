"""edgewatch agent: the daemon that samples a host and pushes frames to the aggregator."""
