//! Turning an expression's result back into JSON within limits: a result may share one value many
//! times (`[@,@]` holds two references, not two copies), so its JSON can be exponentially larger
//! than the memory it takes; rendering counts the bytes it produces and the levels it descends and
//! stops at the limit instead of running out of memory.

use jmespath::Variable;
use serde_json::Value as Json;

use super::Value;
use super::budget::Exceeded;

/// Bytes counted for a number, `true`, `false` or `null` (close to their JSON text).
const SCALAR_BYTES: usize = 8;

/// Converts `value` to JSON, refusing a result larger than `max_bytes` of JSON text (approximately:
/// strings and keys count their length plus quotes, scalars `SCALAR_BYTES`) or nested deeper
/// than `max_depth` levels. Numbers that are integral and in `i64`/`u64` range come back as
/// integers; an expression reference (the result of a bare `&expr`) becomes null.
pub fn to_json_within(value: &Value, max_bytes: usize, max_depth: usize) -> Result<Json, Exceeded> {
    let mut budget = Render {
        left: max_bytes,
        max_bytes,
        max_depth,
    };
    budget.render(value, 0)
}

struct Render {
    left: usize,
    max_bytes: usize,
    max_depth: usize,
}

impl Render {
    fn take(&mut self, bytes: usize) -> Result<(), Exceeded> {
        self.left = self
            .left
            .checked_sub(bytes)
            .ok_or(Exceeded::ResultBytes(self.max_bytes))?;
        Ok(())
    }

    fn render(&mut self, value: &Value, depth: usize) -> Result<Json, Exceeded> {
        match &**value {
            Variable::Null | Variable::Expref(_) => self.take(SCALAR_BYTES).map(|()| Json::Null),
            Variable::Bool(b) => self.take(SCALAR_BYTES).map(|()| Json::Bool(*b)),
            Variable::Number(n) => self
                .take(SCALAR_BYTES)
                .map(|()| Json::Number(super::integral(n))),
            Variable::String(s) => self.take(s.len() + 2).map(|()| Json::String(s.clone())),
            Variable::Array(items) => {
                self.descend(depth)?;
                self.take(2 + items.len())?;
                let rendered = items
                    .iter()
                    .map(|item| self.render(item, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Json::Array(rendered))
            }
            Variable::Object(map) => {
                self.descend(depth)?;
                self.take(2)?;
                let mut rendered = serde_json::Map::new();
                for (key, item) in map {
                    self.take(key.len() + 4)?;
                    rendered.insert(key.clone(), self.render(item, depth + 1)?);
                }
                Ok(Json::Object(rendered))
            }
        }
    }

    fn descend(&self, depth: usize) -> Result<(), Exceeded> {
        if depth >= self.max_depth {
            return Err(Exceeded::Depth(self.max_depth));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::pipeline::expr::to_value;

    #[test]
    fn renders_what_fits_and_refuses_what_does_not() {
        let value = to_value(&json!({"a": [1, "xy", null, true], "b": {"c": 2.5}}));
        assert_eq!(
            to_json_within(&value, 1000, 10).unwrap(),
            json!({"a": [1, "xy", null, true], "b": {"c": 2.5}})
        );
        assert_eq!(
            to_json_within(&value, 20, 10),
            Err(Exceeded::ResultBytes(20))
        );
        assert_eq!(to_json_within(&value, 1000, 1), Err(Exceeded::Depth(1)));
        assert_eq!(
            to_json_within(&value, 1000, 2).unwrap()["b"]["c"],
            json!(2.5)
        );
    }

    #[test]
    fn a_value_shared_exponentially_many_times_stops_at_the_limit() {
        let mut value = to_value(&json!("0123456789"));
        for _ in 0..64 {
            value = Value::new(Variable::Array(vec![value.clone(), value]));
        }
        assert_eq!(
            to_json_within(&value, 1 << 20, 100),
            Err(Exceeded::ResultBytes(1 << 20))
        );
    }
}
