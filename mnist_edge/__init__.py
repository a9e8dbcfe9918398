"""mnist-edge: train the classic Keras MNIST CNN, export it for the edge, verify, bench, ship."""

__version__ = "0.1.0"
