"""paintae: an interactive autoencoder workbench for images.

The package contains data loading, noise, the three autoencoder families, training, checkpoints,
anomaly scoring and metrics; the Streamlit pages in `pages/` only draw what it computes.
"""

import os

# OpenMP threads that busy-wait between parallel regions collapse throughput when another
# process or the app's server thread competes for the cores. Measured on a 2-core CPU with
# scripts/benchmark.py (MLP training, batch 256): with one competing busy process, passive waiting
# gave 67,500 images/s and busy-waiting 35,000; on an otherwise idle machine busy-waiting was about
# 2x faster. The app always shares its cores, so passive is the default; set OMP_WAIT_POLICY=ACTIVE
# before starting a long command-line run on an idle machine. It only takes effect when paintae is
# imported before torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
