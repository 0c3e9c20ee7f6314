"""The database schema: declared once in ``TABLES``, built by the frozen steps in ``STEPS``.

``TABLES`` is what the store's column lists, exports, the schema page (docs/database.md) and the docs
test read. ``STEPS`` are the migrations that build a database, each literal code frozen when
released; ``SCHEMA_VERSION`` is their number. A column added later gets ``since=N`` here and a new
step N that adds it; a test checks that a fresh database's tables and columns equal ``TABLES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlite_utils import Database

from inventory.model import Inventory
from sqlite_utils.migrations import Migrations


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: type
    description: str
    since: int = 1


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()  # unique within (scan_id, target)
    record: str | None = None  # the model class whose fields fill the row

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, type_: type, description: str, since: int = 1) -> Column:
    return Column(name, type_, description, since)


SCAN_ID = _c("scan_id", int, "The scan this row belongs to (scans.id).")
TARGET = _c("target", str, "The configured target name this row came from.")
SCAN_ID_4 = _c("scan_id", int, SCAN_ID.description, 4)  # the cloudstack_* tables came with step 4
TARGET_4 = _c("target", str, "The configured `cloudstack_api` target this row came from.", 4)
RAW = _c("raw_json", str, "The source record as JSON, for what the columns do not carry (no secrets).")

TABLES: tuple[Table, ...] = (
    Table("scans", "One row per run of `scan` (or import).", (
        _c("id", int, "Scan id, increasing."),
        _c("started_at", str, "When collection started (UTC ISO-8601)."),
        _c("finished_at", str, "When the scan was written (UTC ISO-8601)."),
        _c("status", str, "`ok` (every target read), `partial` (some failed) or `failed` (none, or interrupted)."),
        _c("error", str, "Why the scan failed or was interrupted, one line; NULL when it did not."),
        _c("cloudstack_version", str, "The CloudStack release the checks apply (from config or option)."),
        _c("tool_version", str, "cs-inventory version that wrote the scan."),
        _c("config_path", str, "The config file used (path only)."),
    ), key=("id",)),
    Table("targets", "One row per configured target per scan.", (
        SCAN_ID,
        _c("name", str, "Configured target name."),
        _c("hypervisor", str, "`kvm`, `xenserver` or `vmware`."),
        _c("endpoint", str, "What was contacted: host list, pool master URL or vCenter (no secrets)."),
        _c("status", str, "`ok`, `partial` (some hosts failed) or `failed`."),
        _c("error", str, "One-line reason for a failure; for `partial`, the failed hosts and reasons."),
        _c("duration_s", float, "Wall time spent on this target, in seconds."),
        _c("api_calls", int, "Remote calls made (libvirt RPCs, SSH commands, XenAPI or vSphere calls)."),
        _c("detail", str, "JSON: what the endpoint says about itself (vCenter version and license edition …)."),
    ), key=("name",)),
    Table("endpoints", "One row per host or API endpoint a target contacted (a KVM target has one per host).", (
        SCAN_ID, TARGET,
        _c("endpoint", str, "The host or URL as configured."),
        _c("status", str, "`ok`, `partial` (e.g. libvirt read but SSH facts failed), `failed`, or `redirected` "
                          "(a pool member that named its master)."),
        _c("error", str, "One-line reason, NULL when ok."),
        _c("duration_s", float, "Wall time for this endpoint, in seconds."),
        _c("api_calls", int, "Remote calls made to this endpoint."),
    ), key=("endpoint",)),
    Table("clusters", "A KVM cluster (configured or from agent.properties), a XenServer pool, a vSphere cluster.", (
        SCAN_ID, TARGET,
        _c("key", str, "Stable id: configured cluster name, pool UUID, or vSphere managed-object id."),
        _c("name", str, "Display name."),
        _c("hypervisor", str, "`kvm`, `xenserver` or `vmware`."),
        _c("master_host_key", str, "Pool master's host key (XenServer)."),
        _c("drs_enabled", bool, "vSphere DRS enabled."),
        _c("drs_behavior", str, "vSphere DRS default behaviour."),
        _c("ha_enabled", bool, "HA enabled (vSphere HA, XenServer pool HA)."),
        _c("host_count", int, "Hosts in this cluster in this scan."),
        RAW,
    ), key=Inventory.KEYS["clusters"], record="Cluster"),
    Table("hosts", "Hypervisor hosts.", (
        SCAN_ID, TARGET,
        _c("key", str, "Stable id: libvirt host UUID (else the configured address), XAPI UUID, vSphere moid."),
        _c("cluster_key", str, "clusters.key of its cluster."),
        _c("name", str, "Host name as the hypervisor reports it."),
        _c("address", str, "Address as configured or as the API reports it."),
        _c("hypervisor", str, "`kvm`, `xenserver` or `vmware`."),
        _c("uuid", str, "Hardware/host UUID as reported (may repeat across cloned hosts)."),
        _c("hypervisor_version", str, "QEMU version (KVM), product version (XenServer), ESXi version."),
        _c("product_name", str, "Hypervisor product (QEMU, XCP-ng, VMware ESXi …)."),
        _c("build", str, "Product build number."),
        _c("cpu_arch", str, "CPU architecture (x86_64, aarch64)."),
        _c("cpu_vendor", str, "CPU vendor (Intel, AMD)."),
        _c("cpu_model", str, "CPU model name."),
        _c("cpu_sockets", int, "CPU sockets."),
        _c("cpu_cores", int, "Cores per socket."),
        _c("cpu_threads", int, "Threads per core."),
        _c("cpu_mhz", int, "CPU frequency in MHz."),
        _c("hvm", bool, "Hardware virtualisation available (vmx/svm on KVM, hvm capability on Xen)."),
        _c("libvirt_hvm", bool, "libvirt offers hvm guests (the check CloudStack's KVM agent makes)."),
        _c("dev_kvm", bool, "/dev/kvm exists (checked when CloudStack adds a KVM host)."),
        _c("cpu_flags", str, "CPU feature flags, space separated, sorted."),
        _c("memory_bytes", int, "Physical memory in bytes."),
        _c("state", str, "connected, maintenance, disconnected, disabled …"),
        _c("is_pool_master", bool, "XenServer pool master."),
        _c("os_id", str, "OS id from /etc/os-release (ubuntu, rocky, debian …)."),
        _c("os_name", str, "OS name from /etc/os-release."),
        _c("os_version", str, "OS version from /etc/os-release (VERSION_ID)."),
        _c("kernel_version", str, "Kernel release (uname -r)."),
        _c("libvirt_version", str, "libvirt version (KVM)."),
        _c("agent_version", str, "cloudstack-agent package version; NULL if not installed or unknown."),
        _c("agent_state", str,
           "cloudstack-agent service state: active, inactive, failed, not-installed; NULL not read (KVM without SSH "
           "facts) or no agent (XenServer, VMware)."),
        _c("agent_zone", str, "agent.properties `zone`."),
        _c("agent_pod", str, "agent.properties `pod`."),
        _c("agent_cluster", str, "agent.properties `cluster`."),
        _c("agent_guid", str, "agent.properties `guid`."),
        _c("agent_host", str, "agent.properties `host` (management server addresses)."),
        _c("agent_private_device", str, "agent.properties `private.network.device`."),
        _c("agent_public_device", str, "agent.properties `public.network.device`."),
        _c("agent_guest_device", str, "agent.properties `guest.network.device`."),
        _c("time_synced", bool, "Clock synchronised (NTP/chrony); NULL unknown."),
        RAW,
        _c("product_line", str, "ESXi's product line (`embeddedEsx` for ESXi, `esx` for classic ESX).", since=3),
        _c("local_disk_bytes", int, "Local disk capacity in bytes (ESXi: local SCSI disks).", since=3),
        _c("host_os", str, "The OS name CloudStack's KVM agent reports (Host.OS): /etc/redhat-release before "
                           "\"release\", else lsb-release DISTRIB_ID, else os-release NAME.", since=3),
        _c("fqdn", str, "`hostname --fqdn` (KVM).", since=3),
        _c("java_version", str, "Version of the host's default `java` (KVM; the agent runs on it).", since=3),
        _c("selinux_mode", str, "SELinux mode: enforcing, permissive or disabled; NULL when there is no SELinux.",
           since=3),
        _c("apparmor_libvirt", str, "AppArmor mode of the libvirtd/virt-aa-helper profiles (enforce, complain), "
                                    "`unloaded`, or NULL when there is no AppArmor.", since=3),
        _c("firewall", str, "The host firewall in charge: firewalld, ufw, or none.", since=3),
        _c("ovs_version", str, "Open vSwitch version (`ovs-vsctl --version`); NULL when not installed.", since=3),
        _c("agent_certificates", bool, "The agent's keystore and certificates exist (cloud.jks, cloud.crt, "
                                       "cloud.ca.crt, cloud.key; tested, never read).", since=3),
        _c("libvirt_tls", bool, "libvirtd listens on TCP 16514 (TLS).", since=3),
        _c("agent_connected", bool, "The host has an established TCP connection to port 8250 (a management server).",
           since=3),
        _c("uefi_firmware", bool, "libvirt offers a UEFI loader (domain capabilities: OVMF/edk2 installed).", since=3),
        _c("applied_updates", str, "XenServer: the updates and hotfixes applied, sorted, comma separated (XAPI "
                                   "pool_update and host_patch).", since=3),
    ), key=Inventory.KEYS["hosts"], record="Host"),
    Table("vms", "Guest VMs (templates excluded on XenServer; flagged on VMware).", (
        SCAN_ID, TARGET,
        _c("key", str, "Stable id: domain UUID, XAPI UUID, vSphere instance UUID."),
        _c("host_key", str, "hosts.key of the host it is on (or registered on)."),
        _c("cluster_key", str, "clusters.key of its cluster."),
        _c("name", str, "Name as the hypervisor shows it."),
        _c("uuid", str, "VM UUID as reported."),
        _c("instance_name", str, "CloudStack's internal name if it follows CloudStack's naming."),
        _c("cs_role", str, "`user`, `router`, `internal_lb`, `ssvm`, `cpvm` or `unmanaged` (from the instance name; "
                           "on VMware the "
                           "`cloud.vm.internal.name` attribute when set), or `worker` (a VMware helper VM CloudStack "
                           "marked `cloud.vm.worker`)."),
        _c("cs_account_id", int, "CloudStack account id from `i-<account>-<id>-VM`."),
        _c("cs_id", int, "CloudStack VM id from the instance name."),
        _c("power_state", str, "running, stopped, paused, suspended, crashed, stopping, unknown."),
        _c("vcpus", int, "Virtual CPUs."),
        _c("memory_bytes", int, "Memory in bytes."),
        _c("guest_os", str, "Guest OS as the hypervisor knows it."),
        _c("tools_state", str, "Guest tools state (VMware Tools, Xen PV drivers)."),
        _c("is_template", bool, "A template rather than a VM."),
        RAW,
    ), key=Inventory.KEYS["vms"], record="Vm"),
    Table("vm_disks", "Disks of VMs.", (
        SCAN_ID, TARGET,
        _c("vm_key", str, "vms.key."),
        _c("device", str, "Device name (vda, xvda, scsi0:1 …)."),
        _c("disk_type", str, "disk, cdrom, floppy or lun."),
        _c("bus", str, "virtio, scsi, ide, sata …"),
        _c("storage_key", str, "storage.key of the pool/SR/datastore holding it."),
        _c("path", str, "Source path, volume or URL."),
        _c("format", str, "qcow2, raw, vhd, vmdk …"),
        _c("capacity_bytes", int, "Virtual size in bytes."),
        _c("allocation_bytes", int, "Space used on storage in bytes."),
        _c("thin", bool, "Thin provisioned (VMware)."),
    ), key=Inventory.KEYS["vm_disks"], record="VmDisk"),
    Table("vm_nics", "Network interfaces of VMs.", (
        SCAN_ID, TARGET,
        _c("vm_key", str, "vms.key."),
        _c("device", str, "Device (vnet0, 0, ethernet-0 …) or index."),
        _c("mac", str, "MAC address, lower case."),
        _c("network_key", str, "networks.key it is connected to."),
        _c("network_name", str, "Bridge, network or port group name."),
        _c("model", str, "NIC model (virtio, e1000, vmxnet3 …)."),
        _c("ip_addresses", str, "Guest IP addresses, comma separated, when reported."),
    ), key=Inventory.KEYS["vm_nics"], record="VmNic"),
    Table("networks", "Bridges, OVS bridges, libvirt networks, Xen networks, port groups.", (
        SCAN_ID, TARGET,
        _c("key", str, "Stable id: `bridge:<name>`, `libvirt:<name>`, XAPI UUID, vSphere moid."),
        _c("name", str, "Name (the traffic label CloudStack matches)."),
        _c("kind", str, "bridge, ovs, libvirt, xen-network, portgroup, dvportgroup."),
        _c("bridge", str, "Bridge device behind it."),
        _c("vlan", int, "VLAN id, if any."),
        _c("mtu", int, "MTU."),
        _c("label", str, "Extra label (e.g. Xen name_description)."),
        RAW,
    ), key=Inventory.KEYS["networks"], record="Network"),
    Table("host_nics", "Host network devices: physical NICs, bridges, bonds, VLANs, VMkernel NICs, PIFs.", (
        SCAN_ID, TARGET,
        _c("host_key", str, "hosts.key."),
        _c("device", str, "Device name (eth0, cloudbr0, vmk0 …)."),
        _c("kind", str, "physical, bridge, ovs, bond, vlan, vmk, pif …"),
        _c("network_key", str, "networks.key it belongs to (a bridge and its ports share one)."),
        _c("mac", str, "MAC address."),
        _c("ip", str, "First IPv4 address (else first IPv6)."),
        _c("netmask", str, "Netmask of `ip`."),
        _c("ip_addresses", str, "All addresses with prefix, comma separated."),
        _c("is_dhcp", bool, "The address was assigned by DHCP (dynamic)."),
        _c("mtu", int, "MTU."),
        _c("vlan", int, "VLAN id, if a VLAN device."),
        _c("is_management", bool, "Carries the host's management address."),
        _c("bond", str, "Bond this device is a member of."),
        _c("link_up", bool, "Link is up."),
        _c("speed", int, "Link speed in Mbit/s."),
    ), key=Inventory.KEYS["host_nics"], record="HostNic"),
    Table("storage", "Primary storage: libvirt pools, NFS/shared mounts, XenServer SRs, vSphere datastores.", (
        SCAN_ID, TARGET,
        _c("key", str, "Stable id: libvirt pool UUID, `mount:<source>`, SR UUID, datastore moid."),
        _c("name", str, "Name."),
        _c("kind", str, "nfs, iscsi, fc, lvm, local, sharedmountpoint, rbd, vmfs, vsan …"),
        _c("shared", bool, "Shared between hosts."),
        _c("capacity_bytes", int, "Capacity in bytes."),
        _c("free_bytes", int, "Free space in bytes."),
        _c("source", str, "server:/path, device or URL."),
        _c("content", str, "What it holds, where the hypervisor says."),
        RAW,
    ), key=Inventory.KEYS["storage"], record="Storage"),
    Table("host_storage", "Which host has which storage attached or mounted.", (
        SCAN_ID, TARGET,
        _c("host_key", str, "hosts.key."),
        _c("storage_key", str, "storage.key."),
        _c("attached", bool, "Currently attached/active/mounted on that host."),
        _c("mount_path", str, "Where it is mounted on the host."),
    ), key=Inventory.KEYS["host_storage"], record="HostStorage"),
    Table("storage_images", "Disk images as their storage lists them, attached to a VM or not: a libvirt pool's "
                            "volumes (as libvirt last refreshed the pool; a shared pool once per target), an SR's "
                            "managed VDIs, a datastore's VM disk files (with `datastore_files = true`).", (
        _c("scan_id", int, SCAN_ID.description, 6),
        _c("target", str, TARGET.description, 6),
        _c("storage_key", str, "storage.key.", 6),
        _c("path", str, "The image's identity on its storage: the file's path (libvirt), the VDI's uuid (XAPI), "
                        "`[datastore] folder/file.vmdk` (vSphere); what `vm_disks.path` holds for an attached image.",
           6),
        _c("name", str, "Its name: the volume's name (libvirt), the VDI's name_label (XAPI), the file's name "
                        "(vSphere).", 6),
        _c("kind", str, "`disk`, `iso`, `directory` (libvirt); `snapshot`, `iso` or the VDI type XAPI gives (`user`, "
                        "`system`, `suspend` …); `disk`, or `vm-file` in a folder holding a VM's disk (vSphere).", 6),
        _c("format", str, "Image format where the storage says (qcow2, raw, vhd …).", 6),
        _c("capacity_bytes", int, "Virtual size in bytes.", 6),
        _c("allocation_bytes", int, "Space it takes on the storage in bytes.", 6),
        _c("backing", str, "The image it is based on, as its `path` (a qcow2 backing file, a VHD parent); NULL "
                           "when none.", 6),
    ), key=Inventory.KEYS["storage_images"], record="StorageImage"),
    Table("cloudstack_zones", "CloudStack's zones, as its API lists them (a `cloudstack_api` target).", (
        SCAN_ID_4, TARGET_4,
        _c("key", str, "CloudStack's zone UUID.", 4),
        _c("name", str, "Zone name.", 4),
        _c("network_type", str, "`Basic` or `Advanced`.", 4),
        _c("allocation_state", str, "`Enabled` or `Disabled`.", 4),
        _c("raw_json", str, "The API's record, for what the columns do not carry.", 4),
    ), key=("key",), record="CloudStackZone"),
    Table("cloudstack_clusters", "CloudStack's clusters (listClusters), with their pod and zone.", (
        SCAN_ID_4, TARGET_4,
        _c("key", str, "CloudStack's cluster UUID.", 4),
        _c("name", str, "Cluster name in CloudStack.", 4),
        _c("zone_key", str, "cloudstack_zones.key.", 4),
        _c("zone_name", str, "Zone name.", 4),
        _c("pod_key", str, "CloudStack's pod UUID.", 4),
        _c("pod_name", str, "Pod name.", 4),
        _c("hypervisor", str, "CloudStack's hypervisor type (`KVM`, `XenServer`, `VMware` …).", 4),
        _c("cluster_type", str, "`CloudManaged` or `ExternalManaged`.", 4),
        _c("allocation_state", str, "`Enabled` or `Disabled`.", 4),
        _c("managed_state", str, "`Managed`, `Unmanaged` …", 4),
        _c("raw_json", str, "The API's record.", 4),
    ), key=("key",), record="CloudStackCluster"),
    Table("cloudstack_hosts", "CloudStack's hypervisor hosts (listHosts type=Routing).", (
        SCAN_ID_4, TARGET_4,
        _c("key", str, "CloudStack's host UUID.", 4),
        _c("name", str, "Host name in CloudStack.", 4),
        _c("cluster_key", str, "cloudstack_clusters.key.", 4),
        _c("zone_key", str, "cloudstack_zones.key.", 4),
        _c("pod_key", str, "CloudStack's pod UUID.", 4),
        _c("address", str, "The management address CloudStack reaches it on (`ipaddress`).", 4),
        _c("hypervisor", str, "CloudStack's hypervisor type.", 4),
        _c("hypervisor_version", str, "The hypervisor version CloudStack records.", 4),
        _c("state", str, "`Up`, `Down`, `Disconnected`, `Alert` …", 4),
        _c("resource_state", str, "`Enabled`, `Disabled`, `Maintenance` …", 4),
        _c("agent_version", str, "CloudStack's version on the host (`version`).", 4),
        _c("raw_json", str, "The API's record.", 4),
    ), key=("key",), record="CloudStackHost"),
    Table("cloudstack_vms", "CloudStack's instances: user VMs (both passes: listall and projectid=-1), system VMs, "
                            "virtual routers and internal load-balancer VMs.", (
        SCAN_ID_4, TARGET_4,
        _c("key", str, "CloudStack's VM UUID.", 4),
        _c("name", str, "Name in CloudStack.", 4),
        _c("role", str, "`user`, `router`, `ssvm`, `cpvm` or `internal_lb`.", 4),
        _c("instance_name", str, "The name on the hypervisor (`i-2-10-VM`, `r-4-VM` …); admin keys only.", 4),
        _c("display_name", str, "Display name.", 4),
        _c("state", str, "CloudStack's state: `Running`, `Stopped`, `Starting`, `Migrating`, `Destroyed` …", 4),
        _c("host_key", str, "cloudstack_hosts.key of the host CloudStack records it on.", 4),
        _c("host_name", str, "That host's name.", 4),
        _c("zone_key", str, "cloudstack_zones.key.", 4),
        _c("hypervisor", str, "CloudStack's hypervisor type.", 4),
        _c("account", str, "Owning account (project VMs: NULL).", 4),
        _c("project", str, "Owning project, for project VMs.", 4),
        _c("vcpus", int, "Virtual CPUs.", 4),
        _c("memory_bytes", int, "Memory in bytes.", 4),
        _c("raw_json", str, "The API's record (NICs, role, redundant state …).", 4),
    ), key=("key",), record="CloudStackVm"),
    Table("cloudstack_volumes", "CloudStack's volumes (both passes, with listsystemvms=true).", (
        SCAN_ID_4, TARGET_4,
        _c("key", str, "CloudStack's volume UUID.", 4),
        _c("name", str, "Volume name.", 4),
        _c("volume_type", str, "`ROOT` or `DATADISK`.", 4),
        _c("state", str, "`Ready`, `Allocated`, `Expunged` …", 4),
        _c("path", str, "Its file or VDI on primary storage (a KVM file name, a VDI UUID, a VMDK name).", 4),
        _c("pool_key", str, "cloudstack_storage_pools.key.", 4),
        _c("pool_name", str, "The pool's name.", 4),
        _c("vm_key", str, "cloudstack_vms.key it is attached to.", 4),
        _c("vm_name", str, "That VM's name.", 4),
        _c("zone_key", str, "cloudstack_zones.key.", 4),
        _c("size_bytes", int, "Virtual size in bytes.", 4),
        _c("hypervisor", str, "CloudStack's hypervisor type.", 4),
        _c("raw_json", str, "The API's record.", 4),
    ), key=("key",), record="CloudStackVolume"),
    Table("cloudstack_storage_pools", "CloudStack's primary storage pools (listStoragePools).", (
        SCAN_ID_4, TARGET_4,
        _c("key", str, "CloudStack's pool UUID (also the name it gives the pool on KVM and XenServer).", 4),
        _c("name", str, "Pool name in CloudStack.", 4),
        _c("pool_type", str, "`NetworkFilesystem`, `Filesystem`, `RBD`, `VMFS`, `PreSetup` …", 4),
        _c("scope", str, "`CLUSTER`, `ZONE` or `HOST`.", 4),
        _c("address", str, "Server address (`ipaddress`).", 4),
        _c("path", str, "Export or path on the server.", 4),
        _c("cluster_key", str, "cloudstack_clusters.key (cluster-wide pools).", 4),
        _c("zone_key", str, "cloudstack_zones.key.", 4),
        _c("state", str, "`Up`, `Maintenance`, `Disabled` …", 4),
        _c("hypervisor", str, "CloudStack's hypervisor type (zone-wide pools).", 4),
        _c("capacity_bytes", int, "Total size in bytes (`disksizetotal`).", 4),
        _c("used_bytes", int, "Used bytes (`disksizeused`).", 4),
        _c("allocated_bytes", int, "Allocated bytes (`disksizeallocated`).", 4),
        _c("raw_json", str, "The API's record.", 4),
    ), key=("key",), record="CloudStackStoragePool"),
    Table("cloudstack_settings", "The global settings the checks read, as this CloudStack has them "
                                 "(listConfigurations).", (
        SCAN_ID_4, TARGET_4,
        _c("name", str, "Setting name (`storage.overprovisioning.factor` …).", 4),
        _c("value", str, "Its value in this CloudStack.", 4),
        _c("category", str, "CloudStack's category for it.", 4),
        _c("is_default", bool, "The value is CloudStack's default; NULL when the API does not say.", 4),
    ), key=("name",), record="CloudStackSetting"),
    Table("cloudstack_traffic_labels", "Traffic labels per physical network, traffic type and hypervisor "
                                       "(listTrafficTypes): the bridge, network or port group CloudStack expects.", (
        SCAN_ID_4, TARGET_4,
        _c("physical_network_key", str, "CloudStack's physical network UUID.", 4),
        _c("traffic_type", str, "`Management`, `Guest`, `Public`, `Storage`.", 4),
        _c("hypervisor", str, "cs-inventory's kind the label is for (`kvm`, `xenserver`, `vmware` …).", 4),
        _c("label", str, "The label; NULL when none is set (the hypervisor's default applies).", 4),
        _c("physical_network", str, "The physical network's name.", 4),
        _c("zone_key", str, "cloudstack_zones.key.", 4),
    ), key=("physical_network_key", "traffic_type", "hypervisor"), record="CloudStackTrafficLabel"),
    Table("findings", "Results of the CloudStack requirement checks per scan.", (
        SCAN_ID, TARGET,
        _c("cluster", str, "Cluster key of the object, for grouping (NULL when it has none)."),
        _c("rule_id", str, "Stable rule id."),
        _c("severity", str, "error, warning or info."),
        _c("object_type", str, "cluster, host, vm, network, storage, target."),
        _c("object_key", str, "Key of the object."),
        _c("message", str, "What is wrong, one line."),
        _c("observed", str, "The observed value."),
        _c("expected", str, "The expected value."),
        _c("remediation", str, "What to do."),
        _c("reference", str, "Where the requirement is written down: files, lines or methods, release tags."),
        _c("basis", str, "How sure the rule is: CODE (CloudStack's code enforces it), DOC (documented), BP "
                         "(recommended) or INF (cs-inventory's inference).", since=3),
        _c("number", int, "The finding's number within its scan, from 1 (`finding_objects.finding`).", since=5),
        _c("object_count", int, "How many objects the finding is about: more than one when the same statement holds "
                                "for several VMs or hosts of one cluster (or of a target's hosts in no cluster), "
                                "each listed in `finding_objects`.", since=5),
        _c("object_name", str, "The object's name (a grouped finding's names are in `finding_objects`).", since=5),
    )),
    Table("finding_objects", "Every object of every finding, with what the finding says of it alone: a finding about "
                             "many objects (`findings.object_count` > 1) has a row per object here.", (
        _c("scan_id", int, SCAN_ID.description, 5),
        _c("finding", int, "The finding it belongs to (`findings.number` within the scan).", 5),
        _c("target", str, TARGET.description, 5),
        _c("cluster", str, "Cluster key of the object (NULL when it has none).", 5),
        _c("rule_id", str, "The finding's rule.", 5),
        _c("severity", str, "The finding's severity.", 5),
        _c("object_type", str, "cluster, host, vm, network, storage, target.", 5),
        _c("object_key", str, "Key of the object.", 5),
        _c("object_name", str, "Its name, when the rule knows it.", 5),
        _c("message", str, "What is wrong with this object, one line.", 5),
        _c("observed", str, "The value observed on this object.", 5),
        _c("expected", str, "The expected value.", 5),
    )),
)

TABLES_BY_NAME = {t.name: t for t in TABLES}
INVENTORY_TABLES = tuple(t.name for t in TABLES if t.record)
EXPORTABLE_TABLES = tuple(t.name for t in TABLES)

# -- the steps that build a database ------------------------------------------------------------
# Each step is frozen once released: literal DDL, never read from TABLES, so a change to the
# declaration can never change what an applied step created. A change to the schema is a new step
# at the end (tests/test_schema.py checks that a fresh database matches TABLES).

# Step 1 is cs-inventory 0.1.0's schema, as fixtures/store/cs-inventory-0.1.0.db holds it.
_V1_TABLES: tuple[tuple[str, str], ...] = (
    ("scans", "id INTEGER PRIMARY KEY, started_at TEXT, finished_at TEXT, status TEXT, error TEXT, "
              "cloudstack_version TEXT, tool_version TEXT, config_path TEXT"),
    ("targets", "scan_id INTEGER, name TEXT, hypervisor TEXT, endpoint TEXT, status TEXT, error TEXT, duration_s REAL, "
                "api_calls INTEGER, detail TEXT"),
    ("endpoints", "scan_id INTEGER, target TEXT, endpoint TEXT, status TEXT, error TEXT, duration_s REAL, "
                  "api_calls INTEGER"),
    ("clusters", "scan_id INTEGER, target TEXT, key TEXT, name TEXT, hypervisor TEXT, master_host_key TEXT, "
                 "drs_enabled INTEGER, drs_behavior TEXT, ha_enabled INTEGER, host_count INTEGER, raw_json TEXT"),
    ("hosts", "scan_id INTEGER, target TEXT, key TEXT, cluster_key TEXT, name TEXT, address TEXT, hypervisor TEXT, "
              "uuid TEXT, hypervisor_version TEXT, product_name TEXT, build TEXT, cpu_arch TEXT, cpu_vendor TEXT, "
              "cpu_model TEXT, cpu_sockets INTEGER, cpu_cores INTEGER, cpu_threads INTEGER, cpu_mhz INTEGER, "
              "hvm INTEGER, libvirt_hvm INTEGER, dev_kvm INTEGER, cpu_flags TEXT, memory_bytes INTEGER, state TEXT, "
              "is_pool_master INTEGER, os_id TEXT, os_name TEXT, os_version TEXT, kernel_version TEXT, "
              "libvirt_version TEXT, agent_version TEXT, agent_state TEXT, agent_zone TEXT, agent_pod TEXT, "
              "agent_cluster TEXT, agent_guid TEXT, agent_host TEXT, agent_private_device TEXT, "
              "agent_public_device TEXT, agent_guest_device TEXT, time_synced INTEGER, raw_json TEXT"),
    ("vms", "scan_id INTEGER, target TEXT, key TEXT, host_key TEXT, cluster_key TEXT, name TEXT, uuid TEXT, "
            "instance_name TEXT, cs_role TEXT, cs_account_id INTEGER, cs_id INTEGER, power_state TEXT, vcpus INTEGER, "
            "memory_bytes INTEGER, guest_os TEXT, tools_state TEXT, is_template INTEGER, raw_json TEXT"),
    ("vm_disks", "scan_id INTEGER, target TEXT, vm_key TEXT, device TEXT, disk_type TEXT, bus TEXT, storage_key TEXT, "
                 "path TEXT, format TEXT, capacity_bytes INTEGER, allocation_bytes INTEGER, thin INTEGER"),
    ("vm_nics", "scan_id INTEGER, target TEXT, vm_key TEXT, device TEXT, mac TEXT, network_key TEXT, network_name TEXT, "
                "model TEXT, ip_addresses TEXT"),
    ("networks", "scan_id INTEGER, target TEXT, key TEXT, name TEXT, kind TEXT, bridge TEXT, vlan INTEGER, mtu INTEGER, "
                 "label TEXT, raw_json TEXT"),
    ("host_nics", "scan_id INTEGER, target TEXT, host_key TEXT, device TEXT, kind TEXT, network_key TEXT, mac TEXT, "
                  "ip TEXT, netmask TEXT, ip_addresses TEXT, is_dhcp INTEGER, mtu INTEGER, vlan INTEGER, "
                  "is_management INTEGER, bond TEXT, link_up INTEGER, speed INTEGER"),
    ("storage", "scan_id INTEGER, target TEXT, key TEXT, name TEXT, kind TEXT, shared INTEGER, capacity_bytes INTEGER, "
                "free_bytes INTEGER, source TEXT, content TEXT, raw_json TEXT"),
    ("host_storage", "scan_id INTEGER, target TEXT, host_key TEXT, storage_key TEXT, attached INTEGER, mount_path TEXT"),
    ("findings", "scan_id INTEGER, target TEXT, cluster TEXT, rule_id TEXT, severity TEXT, object_type TEXT, "
                 "object_key TEXT, message TEXT, observed TEXT, expected TEXT, remediation TEXT, reference TEXT"),
)
_V1_INDEXES: tuple[tuple[str, tuple[str, ...], bool], ...] = (  # table, columns, unique
    ("targets", ("scan_id", "name"), True),
    ("endpoints", ("scan_id", "endpoint", "target"), True),
    ("clusters", ("scan_id", "key", "target"), True),
    ("hosts", ("scan_id", "key", "target"), True),
    ("vms", ("scan_id", "key", "target"), True),
    ("vm_disks", ("scan_id", "vm_key", "device", "target"), True),
    ("vm_nics", ("scan_id", "vm_key", "device", "target"), True),
    ("networks", ("scan_id", "key", "target"), True),
    ("host_nics", ("scan_id", "host_key", "device", "target"), True),
    ("storage", ("scan_id", "key", "target"), True),
    ("host_storage", ("scan_id", "host_key", "storage_key", "target"), True),
    ("findings", ("scan_id",), False),
)


def _initial(db: Database) -> None:
    """The 0.1.0 tables and indexes, in the text sqlite-utils gave them then (byte-equal in sqlite_master)."""
    for name, columns in _V1_TABLES:
        body = ",\n".join('   "{}" {}'.format(*column.split(" ", 1)) for column in columns.split(", "))
        db.execute(f'CREATE TABLE "{name}" (\n{body}\n)')
    for table, key, unique in _V1_INDEXES:
        quoted = ", ".join(f'"{c}"' for c in key)
        db.execute(f'CREATE {"UNIQUE " if unique else ""}INDEX "idx_{table}_{"_".join(key)}"\n'
                   f'    ON "{table}" ({quoted})')


# Step 2: the latest_<table> views, once built on every open (so 0.1.0 files have them already).
_V2_VIEWS = ("targets", "endpoints", "clusters", "hosts", "vms", "vm_disks", "vm_nics", "networks", "host_nics",
             "storage", "host_storage", "findings")
_V2_LATEST = "(SELECT id FROM scans WHERE status IN ('ok', 'partial') ORDER BY id DESC LIMIT 1)"


def _latest_views(db: Database) -> None:
    """``latest_<table>``: rows of the newest scan that stored anything (status ok or partial)."""
    for name in _V2_VIEWS:
        db.execute(f"DROP VIEW IF EXISTS latest_{name}")
        db.execute(f"CREATE VIEW latest_{name} AS SELECT * FROM {name} WHERE scan_id = {_V2_LATEST}")


# Step 3: the facts the requirement checks read, and each finding's basis. Literal DDL, like step 1.
_V3_COLUMNS: tuple[tuple[str, str], ...] = (
    ("findings", "basis TEXT"),
    ("hosts", "product_line TEXT"),
    ("hosts", "local_disk_bytes INTEGER"),
    ("hosts", "host_os TEXT"),
    ("hosts", "fqdn TEXT"),
    ("hosts", "java_version TEXT"),
    ("hosts", "selinux_mode TEXT"),
    ("hosts", "apparmor_libvirt TEXT"),
    ("hosts", "firewall TEXT"),
    ("hosts", "ovs_version TEXT"),
    ("hosts", "agent_certificates INTEGER"),
    ("hosts", "libvirt_tls INTEGER"),
    ("hosts", "agent_connected INTEGER"),
    ("hosts", "uefi_firmware INTEGER"),
    ("hosts", "applied_updates TEXT"),
)


def _requirement_facts(db: Database) -> None:
    """New columns at the end of their tables (NULL in rows written before: not known)."""
    for table, column in _V3_COLUMNS:
        db.execute(f'ALTER TABLE "{table}" ADD COLUMN {column}')


# Step 4: CloudStack's own view (cloudstack_api targets): its tables, their indexes, their latest views.
_V4_TABLES: tuple[tuple[str, str], ...] = (
    ("cloudstack_zones", "scan_id INTEGER, target TEXT, key TEXT, name TEXT, network_type TEXT, allocation_state TEXT, "
                         "raw_json TEXT"),
    ("cloudstack_clusters", "scan_id INTEGER, target TEXT, key TEXT, name TEXT, zone_key TEXT, zone_name TEXT, "
                            "pod_key TEXT, pod_name TEXT, hypervisor TEXT, cluster_type TEXT, allocation_state TEXT, "
                            "managed_state TEXT, raw_json TEXT"),
    ("cloudstack_hosts", "scan_id INTEGER, target TEXT, key TEXT, name TEXT, cluster_key TEXT, zone_key TEXT, "
                         "pod_key TEXT, address TEXT, hypervisor TEXT, hypervisor_version TEXT, state TEXT, "
                         "resource_state TEXT, agent_version TEXT, raw_json TEXT"),
    ("cloudstack_vms", "scan_id INTEGER, target TEXT, key TEXT, name TEXT, role TEXT, instance_name TEXT, "
                       "display_name TEXT, state TEXT, host_key TEXT, host_name TEXT, zone_key TEXT, hypervisor TEXT, "
                       "account TEXT, project TEXT, vcpus INTEGER, memory_bytes INTEGER, raw_json TEXT"),
    ("cloudstack_volumes", "scan_id INTEGER, target TEXT, key TEXT, name TEXT, volume_type TEXT, state TEXT, path TEXT, "
                           "pool_key TEXT, pool_name TEXT, vm_key TEXT, vm_name TEXT, zone_key TEXT, size_bytes INTEGER, "
                           "hypervisor TEXT, raw_json TEXT"),
    ("cloudstack_storage_pools", "scan_id INTEGER, target TEXT, key TEXT, name TEXT, pool_type TEXT, scope TEXT, "
                                 "address TEXT, path TEXT, cluster_key TEXT, zone_key TEXT, state TEXT, hypervisor TEXT, "
                                 "capacity_bytes INTEGER, used_bytes INTEGER, allocated_bytes INTEGER, raw_json TEXT"),
    ("cloudstack_settings", "scan_id INTEGER, target TEXT, name TEXT, value TEXT, category TEXT, is_default INTEGER"),
    ("cloudstack_traffic_labels", "scan_id INTEGER, target TEXT, physical_network_key TEXT, traffic_type TEXT, "
                                  "hypervisor TEXT, label TEXT, physical_network TEXT, zone_key TEXT"),
)
_V4_INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (  # all unique
    ("cloudstack_zones", ("scan_id", "key", "target")),
    ("cloudstack_clusters", ("scan_id", "key", "target")),
    ("cloudstack_hosts", ("scan_id", "key", "target")),
    ("cloudstack_vms", ("scan_id", "key", "target")),
    ("cloudstack_volumes", ("scan_id", "key", "target")),
    ("cloudstack_storage_pools", ("scan_id", "key", "target")),
    ("cloudstack_settings", ("scan_id", "name", "target")),
    ("cloudstack_traffic_labels", ("scan_id", "physical_network_key", "traffic_type", "hypervisor", "target")),
)


def _cloudstack_api(db: Database) -> None:
    """The cloudstack_* tables, one unique index each (scan_id first), and their latest_ views."""
    for name, columns in _V4_TABLES:
        body = ",\n".join('   "{}" {}'.format(*column.split(" ", 1)) for column in columns.split(", "))
        db.execute(f'CREATE TABLE "{name}" (\n{body}\n)')
    for table, key in _V4_INDEXES:
        quoted = ", ".join(f'"{c}"' for c in key)
        db.execute(f'CREATE UNIQUE INDEX "idx_{table}_{"_".join(key)}"\n    ON "{table}" ({quoted})')
    for name, _ in _V4_TABLES:
        db.execute(f"CREATE VIEW latest_{name} AS SELECT * FROM {name} WHERE scan_id = {_V2_LATEST}")


# Step 5: findings about many objects stored once, their objects one row each. Rows written before are findings
# about one object: numbered in the order they were written, each its own object.
_V5_COLUMNS: tuple[str, ...] = ("number INTEGER", "object_count INTEGER", "object_name TEXT")
_V5_OBJECTS = ("scan_id INTEGER, finding INTEGER, target TEXT, cluster TEXT, rule_id TEXT, severity TEXT, "
               "object_type TEXT, object_key TEXT, object_name TEXT, message TEXT, observed TEXT, expected TEXT")


def _finding_objects(db: Database) -> None:
    """findings.number/object_count/object_name, the finding_objects table (index, latest_ view), earlier rows
    carried over."""
    for column in _V5_COLUMNS:
        db.execute(f'ALTER TABLE "findings" ADD COLUMN {column}')
    body = ",\n".join('   "{}" {}'.format(*column.split(" ", 1)) for column in _V5_OBJECTS.split(", "))
    db.execute(f'CREATE TABLE "finding_objects" (\n{body}\n)')
    db.execute('CREATE INDEX "idx_finding_objects_scan_id_finding"\n    ON "finding_objects" ("scan_id", "finding")')
    db.execute(f"CREATE VIEW latest_finding_objects AS SELECT * FROM finding_objects WHERE scan_id = {_V2_LATEST}")
    db.execute("UPDATE findings SET object_count = 1, number = numbered.n FROM (SELECT rowid AS r, "
               "ROW_NUMBER() OVER (PARTITION BY scan_id ORDER BY rowid) AS n FROM findings) AS numbered "
               "WHERE numbered.r = findings.rowid")
    db.execute("INSERT INTO finding_objects SELECT scan_id, number, target, cluster, rule_id, severity, object_type, "
               "object_key, NULL, message, observed, expected FROM findings ORDER BY rowid")


# Step 6: disk images as their storage lists them, attached or not (a storage leak is an image no volume owns).
_V6_IMAGES = ("scan_id INTEGER, target TEXT, storage_key TEXT, path TEXT, name TEXT, kind TEXT, format TEXT, "
              "capacity_bytes INTEGER, allocation_bytes INTEGER, backing TEXT")


def _storage_images(db: Database) -> None:
    """The storage_images table, its unique index and latest_ view."""
    body = ",\n".join('   "{}" {}'.format(*column.split(" ", 1)) for column in _V6_IMAGES.split(", "))
    db.execute(f'CREATE TABLE "storage_images" (\n{body}\n)')
    db.execute('CREATE UNIQUE INDEX "idx_storage_images_scan_id_storage_key_path_target"\n'
               '    ON "storage_images" ("scan_id", "storage_key", "path", "target")')
    db.execute(f"CREATE VIEW latest_storage_images AS SELECT * FROM storage_images WHERE scan_id = {_V2_LATEST}")


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    apply: Callable[[Database], None]


STEPS: tuple[Step, ...] = (
    Step("0001_initial", _initial),
    Step("0002_latest_views", _latest_views),
    Step("0003_requirement_facts", _requirement_facts),
    Step("0004_cloudstack_api", _cloudstack_api),
    Step("0005_finding_objects", _finding_objects),
    Step("0006_storage_images", _storage_images),
)
SCHEMA_VERSION = len(STEPS)

migrations = Migrations("cs-inventory")
for _step in STEPS:
    migrations(name=_step.name)(_step.apply)


def markdown() -> str:
    """The schema page's generated section (docs/database.md), from the declaration."""
    lines = [f"Schema version {SCHEMA_VERSION}. Every table but `scans` has a `latest_<table>` view "
             "holding the rows of the newest scan with status `ok` or `partial`.", ""]
    for table in TABLES:
        lines += [f"#### `{table.name}`", "", table.description, "", "| column | type | meaning |",
                  "| --- | --- | --- |"]
        for col in table.columns:
            lines.append(f"| `{col.name}` | {_sql_type(col.type)} | {col.description} |")
        lines.append("")
    return "\n".join(lines)


def _sql_type(type_: type) -> str:
    return {int: "INTEGER", float: "FLOAT", str: "TEXT", bool: "INTEGER (0/1)"}[type_]
