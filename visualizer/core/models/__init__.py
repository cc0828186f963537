"""Models: loading (bundled zoo, torchvision, files, factories) and the zoo architectures."""
