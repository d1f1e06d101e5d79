"""paintae: an interactive autoencoder workbench for images.

The package holds data loading, noise, the three autoencoder families, training, checkpoints,
anomaly scoring and metrics; the Streamlit pages in `pages/` only draw what it computes.
"""

import os

# OpenMP threads that busy-wait between parallel regions collapse throughput when another
# process or the app's server thread competes for the cores: measured on a 2-core CPU, MLP
# training fell from about 22,000 to 900 images per second. Passive waiting costs little when
# the cores are idle. This only takes effect when paintae is imported before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
