"""The two-user workload of the end-to-end tests: tagged and untagged queries, a query that fails
at analysis and one that fails in its tasks, a multi-job join whose later jobs skip stages, and a
long query to interrupt or cancel. Each user's queries run in order on that user's thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark.errors import PySparkException

USERS = ("alice", "bob_smith")


@dataclass
class Query:
    label: str
    user: str
    tags: tuple[str, ...]
    action: Callable[[Any], object]
    expect_error: bool = False
    interrupt: bool = False  # the main thread interrupts it by its (first) tag once it runs
    outcome: str | None = None  # "ok" or "error"
    error: str = ""


def queries(long_tag: str) -> list[Query]:
    """The workload; the long query carries `long_tag` and is marked to be interrupted."""
    from pyspark.sql import functions as F

    def join(spark: Any) -> object:
        # shuffle join + aggregate: AQE runs each shuffle map stage as its own job, and later jobs
        # list those stages again as skipped
        left = spark.range(0, 60_000, 1, 4).withColumn("k", F.col("id") % 500)
        right = spark.range(0, 5_000, 1, 2).withColumn("k", F.col("id") % 500)
        return left.join(right.hint("shuffle_merge"), "k").groupBy().count().collect()

    def sleepy(spark: Any) -> object:
        # ~100 s of sleeping tasks on both cores: long enough to be interrupted, cheap on CPU
        return (
            spark.range(0, 400, 1, 2)
            .selectExpr("reflect('java.lang.Thread', 'sleep', CAST(500 AS BIGINT)) AS s")
            .collect()
        )

    return [
        Query(
            "a-agg",
            "alice",
            ("cell-a-agg",),
            lambda s: (
                s.range(0, 200_000, 1, 4).groupBy((F.col("id") % 7).alias("k")).count().collect()
            ),
        ),
        Query(
            "a-plain",
            "alice",
            (),
            lambda s: s.range(0, 10_000, 1, 2).filter("id % 3 = 0").collect(),
        ),
        Query(
            "a-missing-table",
            "alice",
            ("cell-a-missing",),
            lambda s: s.sql("SELECT * FROM sparkscope_no_such_table").collect(),
            expect_error=True,
        ),
        Query(
            "a-task-failure",
            "alice",
            ("cell-a-boom",),
            lambda s: (
                s.range(0, 10, 1, 2)
                .selectExpr("if(id = 7, raise_error('sparkscope-boom'), id) AS x")
                .collect()
            ),
            expect_error=True,
        ),
        Query("b-join", "bob_smith", ("cell-b-join", "team_x"), join),
        Query(
            "b-plain",
            "bob_smith",
            (),
            lambda s: s.range(0, 50_000, 1, 2).selectExpr("max(id)").collect(),
        ),
        Query("b-killme", "bob_smith", (long_tag,), sleepy, expect_error=True, interrupt=True),
    ]


def run_user(spark: Any, queries: list[Query]) -> None:
    for q in queries:
        # tags are thread-local in pyspark: set them on the thread that runs the query
        for tag in q.tags:
            spark.addTag(tag)
        try:
            q.action(spark)
            q.outcome = "ok"
        except PySparkException as exc:
            q.outcome = "error"
            q.error = f"{type(exc).__name__}: {exc}"[:1500]
        finally:
            spark.clearTags()
