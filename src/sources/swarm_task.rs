//! Which Swarm task this process runs in, when it runs in one: what
//! `capstan status` shows of each replica.
//!
//! The container is found from the process's own view of itself (pure
//! parsing, [`container_id`]), then inspected through the Engine for the
//! labels Swarm sets on every task container.
//!
//! Facts (measured on Docker 20.10, cgroup v1, fuse-overlayfs):
//! - `/proc/self/mountinfo` of a container bind-mounts
//!   `<data-root>/containers/<id>/hostname` (and `hosts`, `resolv.conf`) on
//!   `/etc/hostname`: the full id, whatever the storage driver or cgroup
//!   version (with cgroup v2 and its namespace, `/proc/self/cgroup` is `0::/`).
//! - `/proc/self/cgroup` (v1) names `/docker/<id>` for every controller
//!   (`/system.slice/docker-<id>.scope` with the systemd cgroup driver).
//! - The hostname is the first 12 hex digits of the id unless the service
//!   sets `hostname:`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::swarm::{Swarm, SwarmError};

/// The Swarm task a capstan runs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskIdentity {
    pub service_id: String,
    pub service_name: String,
    pub task_id: String,
    /// `<service>.<slot>.<task id>`, also the container's name.
    pub task_name: String,
    pub node_id: String,
    /// Empty when the node could not be inspected (only managers can).
    #[serde(default)]
    pub node_hostname: String,
}

impl TaskIdentity {
    /// The node's hostname, or its id when the hostname is unknown.
    pub fn node(&self) -> &str {
        if self.node_hostname.is_empty() {
            &self.node_id
        } else {
            &self.node_hostname
        }
    }
}

impl Swarm {
    /// How many tasks of `service` Swarm wants running now (its replicas,
    /// or one per eligible node for a global service).
    pub async fn tasks_wanted(&self, service: &str) -> Result<usize, SwarmError> {
        let filters = HashMap::from([
            ("service", vec![service]),
            ("desired-state", vec!["running"]),
        ]);
        let tasks = self
            .docker()
            .list_tasks(Some(
                bollard::query_parameters::ListTasksOptionsBuilder::new()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(SwarmError::api("list tasks"))?;
        Ok(tasks.len())
    }

    /// The Swarm task this process runs in: `None` when it runs in no
    /// container of this Engine, or in one that is not a Swarm task.
    pub async fn this_task(&self) -> Result<Option<TaskIdentity>, SwarmError> {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        let Some(id) = container_id(
            &read("/proc/self/mountinfo"),
            &read("/proc/self/cgroup"),
            read("/proc/sys/kernel/hostname").trim(),
        ) else {
            return Ok(None);
        };
        let container = match self.docker().inspect_container(&id, None).await {
            Ok(container) => container,
            // A hostname that only looked like an id, or another Engine's
            // container (DOCKER_HOST elsewhere).
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(SwarmError::api("inspect container")(e)),
        };
        let labels = container.config.and_then(|c| c.labels).unwrap_or_default();
        let Some(mut identity) = task_labels(&labels) else {
            return Ok(None);
        };
        identity.node_hostname = match self.docker().inspect_node(&identity.node_id).await {
            Ok(node) => node
                .description
                .and_then(|d| d.hostname)
                .unwrap_or_default(),
            Err(error) => {
                tracing::debug!(%error, node = identity.node_id, "cannot inspect this task's node (not a manager?)");
                String::new()
            }
        };
        Ok(Some(identity))
    }
}

/// The identity the labels of a Swarm task's container declare (without
/// the node's hostname); `None` when they are not a task's.
fn task_labels(labels: &HashMap<String, String>) -> Option<TaskIdentity> {
    let label = |key: &str| labels.get(&format!("com.docker.swarm.{key}")).cloned();
    Some(TaskIdentity {
        service_id: label("service.id")?,
        service_name: label("service.name")?,
        task_id: label("task.id")?,
        task_name: label("task.name")?,
        node_id: label("node.id")?,
        node_hostname: String::new(),
    })
}

/// The id (or id prefix) of the container a process runs in, from its
/// `/proc/self/mountinfo`, its `/proc/self/cgroup` and its hostname, in
/// that order of trust; `None` when none names a container.
pub fn container_id(mountinfo: &str, cgroup: &str, hostname: &str) -> Option<String> {
    id_in_mountinfo(mountinfo)
        .or_else(|| id_in_cgroup(cgroup))
        .or_else(|| is_id_prefix(hostname).then_some(hostname))
        .map(str::to_string)
}

/// The id in the source of the `/etc/hostname` (or `hosts`, `resolv.conf`)
/// bind mount: `<data-root>/containers/<id>/hostname`.
fn id_in_mountinfo(mountinfo: &str) -> Option<&str> {
    mountinfo.lines().find_map(|line| {
        // id parent major:minor root mount-point ...
        let mut fields = line.split(' ').skip(3);
        let (root, mount_point) = (fields.next()?, fields.next()?);
        if !matches!(
            mount_point,
            "/etc/hostname" | "/etc/hosts" | "/etc/resolv.conf"
        ) {
            return None;
        }
        let mut parts = root.split('/');
        parts.find(|p| *p == "containers")?;
        parts.next().filter(|id| is_full_id(id))
    })
}

/// The innermost container id in a cgroup path: `/docker/<id>` (cgroupfs
/// driver) or `docker-<id>.scope` (systemd driver).
fn id_in_cgroup(cgroup: &str) -> Option<&str> {
    cgroup.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        let parts: Vec<&str> = path.split('/').collect();
        parts.iter().enumerate().rev().find_map(|(i, part)| {
            let scoped = part
                .strip_prefix("docker-")
                .and_then(|p| p.strip_suffix(".scope"));
            let after_docker = (i > 0 && parts[i - 1] == "docker").then_some(*part);
            scoped.or(after_docker).filter(|id| is_full_id(id))
        })
    })
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_full_id(text: &str) -> bool {
    text.len() == 64 && is_hex(text)
}

/// A hostname Docker made from the id: its first 12 hex digits.
fn is_id_prefix(text: &str) -> bool {
    (12..=64).contains(&text.len()) && is_hex(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4fca2f29e608adf13c559770f2406839e086c84f2f5afe11a210a0214ce71cb5";

    /// `/proc/<pid>/mountinfo` of a Swarm task (`capstan-test-http`, a
    /// service with `--hostname custom-host`), Docker 20.10, fuse-overlayfs,
    /// cgroup v1; the lines the search passes over, and the bind mounts.
    const TASK_MOUNTINFO: &str = "\
73 47 0:39 / / rw,nodev,noatime master:2 - fuse.fuse-overlayfs fuse-overlayfs rw,user_id=0,group_id=0,default_permissions,allow_other
74 73 0:41 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
78 77 0:45 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
79 78 0:29 /docker/4fca2f29e608adf13c559770f2406839e086c84f2f5afe11a210a0214ce71cb5 /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
88 75 0:40 / /dev/mqueue rw,nosuid,nodev,noexec,relatime - mqueue mqueue rw
89 75 0:46 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k
90 73 254:0 /var/lib/docker/containers/4fca2f29e608adf13c559770f2406839e086c84f2f5afe11a210a0214ce71cb5/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
91 73 254:0 /var/lib/docker/containers/4fca2f29e608adf13c559770f2406839e086c84f2f5afe11a210a0214ce71cb5/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
92 73 254:0 /var/lib/docker/containers/4fca2f29e608adf13c559770f2406839e086c84f2f5afe11a210a0214ce71cb5/hosts /etc/hosts rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
48 74 0:41 /bus /proc/bus ro,nosuid,nodev,noexec,relatime - proc proc rw
";

    /// `/proc/<pid>/cgroup` of the same task.
    const TASK_CGROUP: &str = "\
9:name=systemd:/docker/4fca2f29e608adf13c559770f2406839e086c84f2f5afe11a210a0214ce71cb5
4:memory:/docker/4fca2f29e608adf13c559770f2406839e086c84f2f5afe11a210a0214ce71cb5
1:cpu:/docker/4fca2f29e608adf13c559770f2406839e086c84f2f5afe11a210a0214ce71cb5
0::/docker/4fca2f29e608adf13c559770f2406839e086c84f2f5afe11a210a0214ce71cb5
";

    /// The Docker host's own (not in a container): its Engine's data root
    /// is mounted, and a sandbox's cgroup carries a 32-digit hex name.
    const HOST_MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
43 27 0:4 net:[4026532178] /run/docker/netns/ingress_sbox rw - nsfs nsfs rw
";
    const HOST_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/641e243dfe3df7ba3d867764c4582677
0::/
";

    #[test]
    fn a_task_is_found_by_its_hostname_bind_mount_whatever_its_hostname() {
        assert_eq!(
            container_id(TASK_MOUNTINFO, "", "custom-host").as_deref(),
            Some(ID)
        );
        // cgroup v2 with its namespace: the mounts alone tell.
        assert_eq!(
            container_id(TASK_MOUNTINFO, "0::/\n", "custom-host").as_deref(),
            Some(ID)
        );
    }

    #[test]
    fn the_cgroup_names_the_container_when_the_mounts_do_not() {
        assert_eq!(
            container_id("", TASK_CGROUP, "custom-host").as_deref(),
            Some(ID)
        );
        let systemd = format!("1:name=systemd:/system.slice/docker-{ID}.scope\n");
        assert_eq!(container_id("", &systemd, "").as_deref(), Some(ID));
        // Docker in Docker: the innermost container.
        let nested = format!("4:memory:/docker/{ID}/docker/{}\n", "a".repeat(64));
        assert_eq!(container_id("", &nested, "").unwrap(), "a".repeat(64));
    }

    #[test]
    fn a_default_hostname_is_the_last_resort() {
        assert_eq!(
            container_id("", "", "4fca2f29e608").as_deref(),
            Some("4fca2f29e608")
        );
        assert_eq!(container_id("", "", "custom-host"), None);
        assert_eq!(container_id("", "", "cafe"), None);
    }

    #[test]
    fn the_host_itself_is_no_container() {
        assert_eq!(container_id(HOST_MOUNTINFO, HOST_CGROUP, "vm"), None);
    }

    #[test]
    fn a_task_is_read_from_the_labels_swarm_sets() {
        let labels: HashMap<String, String> = [
            ("com.docker.swarm.node.id", "w4chl424znay72wjnv608g2g4"),
            ("com.docker.swarm.service.id", "r8gbjbwk188d682uebmaryent"),
            ("com.docker.swarm.service.name", "proxy"),
            ("com.docker.swarm.task", ""),
            ("com.docker.swarm.task.id", "virwlo2vi79an2xv4189p990l"),
            (
                "com.docker.swarm.task.name",
                "proxy.1.virwlo2vi79an2xv4189p990l",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let task = task_labels(&labels).unwrap();
        assert_eq!(task.service_name, "proxy");
        assert_eq!(task.task_name, "proxy.1.virwlo2vi79an2xv4189p990l");
        assert_eq!(task.node(), "w4chl424znay72wjnv608g2g4");

        let mut plain = labels;
        plain.remove("com.docker.swarm.task.id");
        assert_eq!(task_labels(&plain), None);
    }
}
