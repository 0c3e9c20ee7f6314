"""The rule catalogue: CloudStack's requirements as checks over a stored scan, one module per subject.

Each rule's docstring is its documentation (first line: the requirement). References name the
document or source file where the requirement is written down (see the project's reference
sheet, built from apache/cloudstack and cloudstack-documentation at 4.18–4.22). Importing this
package registers every rule in ``RULES``, in the order of the modules below.
"""

from inventory.rulebook import RULES
from inventory.rules import (
    connection, versions, homogeneity, host_fitness, host_setup, networking, storage, hygiene, reconciliation,
)

__all__ = ["RULES", "connection", "homogeneity", "host_fitness", "host_setup", "hygiene", "networking", "reconciliation",
           "storage",
           "versions"]
