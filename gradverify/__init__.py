"""gradverify: checks hand-written backpropagation, node by node."""

__version__ = "0.1.0"
