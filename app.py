"""paintae workbench: `streamlit run app.py`. Sets up navigation and draws the home page."""

from __future__ import annotations

import logging

import pandas as pd
import streamlit as st

from paintae import config, ui, workbench

PAGES = {
    "Train": "Train a reconstruction, denoising or anomaly autoencoder live and save it.",
    "Denoise": "Add noise to an image and compare a denoising model with classical filters.",
    "Anomaly": "Rank paintings by reconstruction error and check the ranking against labels.",
    "Benchmarks": "Speed and quality measurements of the models and the scoring code.",
}


def home() -> None:
    ui.setup_page("paintae", "An interactive autoencoder workbench for images.")
    for name, sentence in PAGES.items():
        st.markdown(f"- **{name}**: {sentence}")

    env = workbench.scan_environment()
    st.subheader("What was found")
    left, right = st.columns(2)
    with left:
        if env.data_root is None:
            st.metric("Data root", "not set")
        else:
            st.markdown(f"**Data root:** `{env.data_root}`")
        st.metric("Fashion-MNIST", "found" if env.fashion_mnist else "missing")
    with right:
        st.metric("Painting folders", len(env.painting_folders))
        st.metric("Checkpoints", len(env.checkpoints))

    if env.painting_folders:
        rows = [
            {
                "folder": folder.name,
                "images": folder.count,
                "classes": ", ".join(f"{k} ({v})" for k, v in folder.classes.items()) or "-",
                "path": str(folder.path),
            }
            for folder in env.painting_folders
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="home_folders")

    if env.checkpoints:
        st.subheader("Checkpoints")
        st.dataframe(
            pd.DataFrame([_checkpoint_row(info) for info in env.checkpoints]),
            hide_index=True,
            key="home_checkpoints",
        )
        st.caption(
            f"Shipped: {config.repo_checkpoint_dir()}. Yours: {config.user_checkpoint_dir()} "
            f"(set {config.CHECKPOINTS_ENV} to change it)."
        )

    if env.next_steps:
        st.subheader("Next steps")
        for step in env.next_steps:
            st.info(step)


def _checkpoint_row(info) -> dict:
    model = info.metadata.get("model", {})
    described = info.metadata.get("data", {})
    row = {
        "name": info.name,
        "family": info.family,
        "model": model.get("name"),
        "latent": model.get("latent"),
        "data": described.get("folder") or described.get("dataset"),
        "origin": "shipped" if info.shipped else "yours",
    }
    for key, value in info.metadata.get("test_metrics", {}).items():
        row[key] = round(value, 5) if isinstance(value, float) else value
    threshold = info.metadata.get("anomaly", {}).get("threshold")
    if threshold is not None:
        row["threshold"] = round(threshold, 6)
    return row


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    st.set_page_config(page_title="paintae", layout="wide")
    navigation = st.navigation(
        [
            st.Page(home, title="Home", default=True),
            st.Page("pages/train.py", title="Train", url_path="train"),
            st.Page("pages/denoise.py", title="Denoise", url_path="denoise"),
            st.Page("pages/anomaly.py", title="Anomaly", url_path="anomaly"),
            st.Page("pages/benchmarks.py", title="Benchmarks", url_path="benchmarks"),
        ]
    )
    navigation.run()


main()
