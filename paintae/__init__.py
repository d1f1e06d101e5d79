"""paintae: an interactive autoencoder workbench for images.

The package holds data loading, noise, the three autoencoder families, training, checkpoints,
anomaly scoring and metrics; the Streamlit pages in `pages/` only draw what it computes.
"""

__version__ = "0.1.0"
