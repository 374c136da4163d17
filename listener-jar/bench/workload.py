"""Task-heavy Spark Connect workload for measure_cost.sh: many tiny tasks, with a shuffle."""

import os
import sys
import time

from pyspark.sql import SparkSession

url, tasks, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
spark = SparkSession.builder.remote(url).getOrCreate()
spark.addTag("sparkscope-bench")
for i in range(rounds):
    t = time.time()
    rows = (
        spark.range(0, tasks * 10, numPartitions=tasks)
        .selectExpr("id % 97 AS k")
        .groupBy("k")
        .count()
        .collect()
    )
    assert len(rows) == 97, rows
    print(f"round {i + 1}/{rounds}: {tasks} map tasks in {time.time() - t:.1f} s", flush=True)
spark.stop()
os._exit(0)  # don't linger on client threads
