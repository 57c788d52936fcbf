"""One local SparkSession per test process, tuned for tiny data."""

from __future__ import annotations

import shutil

import pytest

# Settings for a few thousand rows on two cores: one shuffle partition per core, and no
# whole-stage code generation or adaptive re-planning (compiling and re-planning each stage
# costs more than running it at this size). Results do not depend on any of them.
SMALL_DATA = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.adaptive.enabled": "false",
    "spark.driver.memory": "1g",
    "spark.ui.enabled": "false",
}


@pytest.fixture(scope="session")
def spark():
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java (17) on PATH")
    from distillguard.engines.spark import spark_session

    session = spark_session("local[2]", shuffle_partitions=2, conf=SMALL_DATA)
    yield session
    session.stop()
