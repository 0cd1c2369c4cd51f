"""The path templates of the DICOMweb resources (PS3.18 10.4-10.6), under the DICOMweb root:
the route table matches them and `web/urls.py` fills them in."""

from __future__ import annotations

STUDY = "/studies/{study}"
SERIES = STUDY + "/series/{series}"
INSTANCE = SERIES + "/instances/{instance}"
FRAMES = INSTANCE + "/frames/{frames}"
BULK_DATA = INSTANCE + "/bulkdata/{path}"
WORKITEM = "/workitems/{workitem}"  # PS3.18 11.1.1
# The Filtered Worklist's subscriptions, PS3.18 11.10 (its UID: PS3.4 CC.3.1).
FILTERED_WORKLIST = "/workitems/1.2.840.10008.5.1.4.34.5.1"
