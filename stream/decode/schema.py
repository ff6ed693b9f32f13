"""Column types of the Defender Advanced Hunting tables we read (from Microsoft's schema pages).

Only the columns a loaded rule uses are type-checked; the rest pass through untouched.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["string", "long", "datetime", "bool", "dynamic"]

_STRING_COLUMNS = [
    "DeviceId",
    "DeviceName",
    "ActionType",
    "RemoteIP",
    "RemoteUrl",
    "LocalIP",
    "Protocol",
    "LocalIPType",
    "RemoteIPType",
    "InitiatingProcessSHA1",
    "InitiatingProcessSHA256",
    "InitiatingProcessMD5",
    "InitiatingProcessFileName",
    "InitiatingProcessVersionInfoCompanyName",
    "InitiatingProcessVersionInfoProductName",
    "InitiatingProcessVersionInfoProductVersion",
    "InitiatingProcessVersionInfoInternalFileName",
    "InitiatingProcessVersionInfoOriginalFileName",
    "InitiatingProcessVersionInfoFileDescription",
    "InitiatingProcessCommandLine",
    "InitiatingProcessFolderPath",
    "InitiatingProcessParentFileName",
    "InitiatingProcessAccountDomain",
    "InitiatingProcessAccountName",
    "InitiatingProcessAccountSid",
    "InitiatingProcessAccountUpn",
    "InitiatingProcessAccountObjectId",
    "InitiatingProcessIntegrityLevel",
    "InitiatingProcessTokenElevation",
    "AppGuardContainerId",
    "InitiatingProcessRemoteSessionDeviceName",
    "InitiatingProcessRemoteSessionIP",
    "MachineGroup",
]
_LONG_COLUMNS = [
    "RemotePort",
    "LocalPort",
    "InitiatingProcessFileSize",
    "InitiatingProcessId",
    "InitiatingProcessParentId",
    "ReportId",
    "InitiatingProcessSessionId",
    "InitiatingProcessUniqueId",
]
_DATETIME_COLUMNS = [
    "Timestamp",
    "InitiatingProcessCreationTime",
    "InitiatingProcessParentCreationTime",
]

DEVICE_NETWORK_EVENTS: dict[str, Kind] = {
    **{c: "string" for c in _STRING_COLUMNS},
    **{c: "long" for c in _LONG_COLUMNS},
    **{c: "datetime" for c in _DATETIME_COLUMNS},
    "IsInitiatingProcessRemoteSession": "bool",
    "AdditionalFields": "dynamic",
}

TABLES: dict[str, dict[str, Kind]] = {"DeviceNetworkEvents": DEVICE_NETWORK_EVENTS}

# Identity of an event (docs: a unique event is DeviceName + Timestamp + ReportId; we add DeviceId).
IDENTITY_COLUMNS = ("DeviceId", "DeviceName", "Timestamp", "ReportId")


# Advanced Hunting tables the Defender streaming API exports (category AdvancedHunting-<name>).
KNOWN_TABLES = frozenset(
    [
        "DeviceNetworkEvents",
        "DeviceProcessEvents",
        "DeviceFileEvents",
        "DeviceRegistryEvents",
        "DeviceLogonEvents",
        "DeviceImageLoadEvents",
        "DeviceEvents",
        "DeviceInfo",
        "DeviceNetworkInfo",
        "DeviceFileCertificateInfo",
        "AlertInfo",
        "AlertEvidence",
        "EmailEvents",
        "EmailAttachmentInfo",
        "EmailUrlInfo",
        "EmailPostDeliveryEvents",
        "UrlClickEvents",
        "IdentityLogonEvents",
        "IdentityQueryEvents",
        "IdentityDirectoryEvents",
        "CloudAppEvents",
    ]
)


def known_columns(table: str) -> frozenset[str] | None:
    """The columns of a table whose schema we carry, or None when we carry none."""
    cols = TABLES.get(table)
    return frozenset(cols) if cols is not None else None


def column_kind(table: str, column: str) -> Kind:
    return TABLES.get(table, {}).get(column, "dynamic")
