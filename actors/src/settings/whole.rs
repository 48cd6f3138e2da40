//! Whole numbers, strictly: the `config` crate rounds `1.5` to `2` when an
//! integer is asked for, and a count silently rounded is a count the
//! operator did not write. Strings (from environment variables) are parsed.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};

pub fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    deserializer.deserialize_any(WholeVisitor(PhantomData))
}

struct WholeVisitor<T>(PhantomData<T>);

impl<T: TryFrom<u64>> Visitor<'_> for WholeVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole number of 0 or more")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
        T::try_from(n).map_err(|_| E::custom(format!("{n} is too large")))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        match u64::try_from(n) {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::custom(format!(
                "{n} is negative; expected a whole number of 0 or more"
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<T, E> {
        Err(E::custom(format!("{n} is not a whole number")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        match text.trim().parse::<u64>() {
            Ok(n) => self.visit_u64(n),
            Err(_) => Err(E::custom(format!(
                "\"{text}\" is not a whole number of 0 or more"
            ))),
        }
    }
}
