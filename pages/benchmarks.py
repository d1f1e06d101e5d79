"""Benchmarks page: the measured results in benchmarks/results.json and docs/benchmarks.md."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from paintae import ui, workbench

ui.setup_page("Benchmarks", "Speed and quality measurements recorded in the repository.")

try:
    results, page = workbench.read_benchmarks()
except ValueError as error:
    ui.show_error(error, "The benchmark results could not be read")
    results, page = None, None

if results is None and page is None:
    st.info(
        "No benchmarks recorded yet: run the benchmark scripts in scripts/ to write "
        "benchmarks/results.json and docs/benchmarks.md, then reload this page."
    )
if page:
    st.markdown(page)
if results is not None:
    st.subheader("benchmarks/results.json")
    rows = workbench.benchmark_rows(results)
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="benchmarks_table")
    with st.expander("Raw JSON"):
        st.json(results)
