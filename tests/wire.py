"""The job JSON's field names, as API.md fixes them (shared by the HTTP tests)."""

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
    }
)
