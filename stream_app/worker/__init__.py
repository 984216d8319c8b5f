"""The thin Faust adapter: the app factory and the agents that carry out what the pure core decides."""
