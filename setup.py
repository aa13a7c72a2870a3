"""minircnn: Fast R-CNN rebuilt from scratch in NumPy and CuPy, for learning."""
from setuptools import find_packages, setup

setup(
    name="minircnn",
    version="0.1.0",
    description="Fast R-CNN (Girshick, 2015) from scratch in NumPy/CuPy, with hand-written backprop",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["minircnn", "minircnn.*"]),
    package_data={"minircnn": ["kernels/*.cu"]},
    install_requires=["numpy>=1.24", "scipy>=1.10", "pillow>=9", "matplotlib>=3.6", "tqdm>=4.66",
                      "scikit-image>=0.21", "threadpoolctl>=3.1"],
    extras_require={
        "gpu": ["cupy-cuda12x>=13"],
        "test": ["pytest>=7", "hypothesis>=6", "nbclient>=0.7", "nbformat>=5.7", "ipykernel>=6", "jupytext>=1.14"],
    },
)
