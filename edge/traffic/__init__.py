"""The intersection's device side: counting its approaches and running a signal plan within safety bounds."""
