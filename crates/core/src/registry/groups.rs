//! Named groups of agencies, addressed as `group:NAME`; and the registry as
//! the directory that routing resolves against.

use serde::{Deserialize, Serialize};

use super::{Registry, RegistryError};
use crate::{
    envelope::{GroupName, OrgCode},
    routing::{Directory, Known},
    store::{self, keys},
};

/// The most members one group may have.
pub const MAX_GROUP_MEMBERS: usize = 10_000;

/// A named set of agencies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Name, addressed as `group:NAME`.
    pub name: GroupName,
    /// What it is for.
    pub description: String,
    /// Members, in order.
    pub members: Vec<OrgCode>,
}

fn group_key(name: &GroupName) -> Vec<u8> {
    keys::join(keys::GROUP, &[name.as_str().as_bytes()])
}

impl Registry {
    /// Creates or replaces a group; every member must be registered.
    pub async fn put_group(
        &self,
        name: &str,
        description: &str,
        members: &[String],
    ) -> Result<Group, RegistryError> {
        let name = GroupName::parse(name, "group.name")?;
        if members.len() > MAX_GROUP_MEMBERS {
            return Err(RegistryError::InvalidGroup(format!(
                "{} members; at most {MAX_GROUP_MEMBERS} are allowed",
                members.len()
            )));
        }
        if description.chars().count() > 500 {
            return Err(RegistryError::InvalidGroup(
                "the description is longer than 500 characters".to_owned(),
            ));
        }
        let mut codes: Vec<OrgCode> = Vec::with_capacity(members.len());
        for (index, member) in members.iter().enumerate() {
            let code = OrgCode::parse(member, &format!("group.members[{index}]"))?;
            if self.get(&code).is_none() {
                return Err(RegistryError::UnknownAgency(code));
            }
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        let group = Group {
            name,
            description: description.trim().to_owned(),
            members: codes,
        };
        let stored = group.clone();
        self.write_admin(
            format!("group {} stored", group.name.as_str()),
            move |writes| {
                writes.put(group_key(&stored.name), store::encode(&stored)?);
                Ok::<_, RegistryError>(())
            },
        )
        .await?;
        self.with_cache(|cache| {
            cache.groups.insert(group.name.clone(), group.clone());
        });
        tracing::info!(
            group = group.name.as_str(),
            members = group.members.len(),
            "group stored"
        );
        Ok(group)
    }

    /// Deletes a group.
    pub async fn delete_group(&self, name: &str) -> Result<(), RegistryError> {
        let name = GroupName::parse(name, "name")?;
        let key_name = name.clone();
        self.write_admin(format!("group {} deleted", name.as_str()), move |writes| {
            let key = group_key(&key_name);
            if writes.get(&key)?.is_none() {
                return Err(RegistryError::UnknownGroup(key_name.as_str().to_owned()));
            }
            writes.delete(key);
            Ok(())
        })
        .await?;
        self.with_cache(|cache| {
            cache.groups.remove(&name);
        });
        Ok(())
    }

    /// Every group, by name.
    pub fn groups(&self) -> Vec<Group> {
        self.read().groups.values().cloned().collect()
    }
}

fn known(disabled: bool) -> Known {
    if disabled {
        Known::Disabled
    } else {
        Known::Enabled
    }
}

impl Directory for Registry {
    fn agency(&self, code: &OrgCode) -> Option<Known> {
        self.read()
            .by_code
            .get(code)
            .map(|agency| known(agency.disabled))
    }

    fn children(&self, parent: &OrgCode) -> Vec<(OrgCode, Known)> {
        self.read()
            .by_code
            .values()
            .filter(|agency| agency.parent.as_ref() == Some(parent))
            .map(|agency| (agency.code.clone(), known(agency.disabled)))
            .collect()
    }

    fn group(&self, name: &GroupName) -> Option<Vec<OrgCode>> {
        self.read()
            .groups
            .get(name)
            .map(|group| group.members.clone())
    }
}
