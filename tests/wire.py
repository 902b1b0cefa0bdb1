"""The job JSON's field names, as API.md fixes them (shared by the HTTP tests).

Part 1's eleven fields, then those Part 2 adds (``queue``, ``runAt`` and the fields
reserved for later features, null until then).
"""

JOB_FIELDS = frozenset(
    {
        "id",
        "name",
        "status",
        "retryCount",
        "maxRetries",
        "createdAt",
        "startedAt",
        "completedAt",
        "lastUpdatedAt",
        "result",
        "error",
        "queue",
        "runAt",
        "partitionKey",
        "tenant",
        "batchId",
        "progress",
        "webhook",
    }
)
