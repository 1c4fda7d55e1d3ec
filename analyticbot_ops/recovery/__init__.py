"""Point-in-time recovery with pgBackRest (compose/docker-compose.backup.yml): the typed view of the
repositories (`catalog`), restore targets (`target`), and the backups and restores themselves (`pitr`).

The database side runs in the stack's `backup-agent` (repository 1 is local there) and the repository host
in `backup-repo` (repository 2); every command goes through `docker exec` or a one-off run of those
services, so the toolkit needs no pgBackRest of its own. The logical dumps of `analyticbot_ops.backups`
stay the portable format beside them."""
