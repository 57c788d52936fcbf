"""One local SparkSession per test process, tuned for tiny data."""

from __future__ import annotations

import os
import shutil

import pytest

# Settings for a few thousand rows on two shared cores: one shuffle partition, interpreted
# expressions instead of generated code and no adaptive re-planning (compiling and re-planning
# each stage costs more than running it at this size), and a JVM that only uses its quick JIT
# tier. Together they halve the tests' time; results do not depend on any of them.
SMALL_DATA = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
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

    os.environ.setdefault(  # read when pyspark launches the JVM
        "PYSPARK_SUBMIT_ARGS", "--driver-java-options -XX:TieredStopAtLevel=1 pyspark-shell"
    )
    session = spark_session("local[2]", shuffle_partitions=1, conf=SMALL_DATA)
    yield session
    session.stop()
