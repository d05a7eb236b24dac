"""The chaos soak (`scripts/soak`): jobs through real worker processes while workers and Redis
are killed, one worker is stopped past its lease, and every job is accounted for afterwards
from a ledger kept outside Redis."""
