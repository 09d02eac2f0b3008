//! Filter and projection: the stateless, per-record steps.

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use weir_engine::data::RowBuilder;
use weir_engine::event::{Epoch, Event};

use crate::expr::Expr;

/// Keeps the records a condition accepts, then computes new columns from them.
pub trait FilterProject<'scope> {
    /// Keeps records for which `filter` is TRUE (all, without one) and replaces each row by
    /// the values of `projection` (unchanged, without one). Event time and watermark travel
    /// with the record.
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Extract;
    /// use weir_engine::data::{DataType, Field, Row, Schema, Value};
    /// use weir_engine::event::Event;
    /// use weir_operators::expr::Expr;
    /// use weir_operators::filter_project::FilterProject;
    ///
    /// let schema = Schema::new(vec![Field::new("amount", DataType::Int)]).unwrap();
    /// let filter = Expr::compile("amount > 10", &schema).unwrap();
    /// let double = Expr::compile("amount * 2", &schema).unwrap();
    /// let out = timely::example(move |scope| {
    ///     let rows = [5, 20].map(|a| Event::new(0, 0, Row::from_values(&[Value::Int(a)])));
    ///     rows.to_stream(scope).filter_project("big", Some(filter), Some(vec![double])).capture()
    /// });
    /// assert_eq!(out.extract()[0].1, vec![Event::new(0, 0, Row::from_values(&[Value::Int(40)]))]);
    /// ```
    fn filter_project(
        self,
        name: &str,
        filter: Option<Expr>,
        projection: Option<Vec<Expr>>,
    ) -> StreamVec<'scope, Epoch, Event>;
}

impl<'scope> FilterProject<'scope> for StreamVec<'scope, Epoch, Event> {
    fn filter_project(
        self,
        name: &str,
        filter: Option<Expr>,
        projection: Option<Vec<Expr>>,
    ) -> StreamVec<'scope, Epoch, Event> {
        self.unary::<CapacityContainerBuilder<Vec<Event>>, _, _, _>(
            Pipeline,
            name,
            move |_cap, _info| {
                let mut builder = RowBuilder::new(projection.as_ref().map_or(0, Vec::len));
                // Bare column references are copied without decoding the value.
                let columns: Vec<Option<usize>> =
                    projection.iter().flatten().map(Expr::as_column).collect();
                move |input, output| {
                    input.for_each_stamp(|cap, data| {
                        let mut session = output.session(&cap);
                        for batch in data {
                            for mut event in batch.drain(..) {
                                if let Some(f) = &filter {
                                    if !f.matches(&event.row) {
                                        continue;
                                    }
                                }
                                if let Some(exprs) = &projection {
                                    for (i, (expr, column)) in
                                        exprs.iter().zip(&columns).enumerate()
                                    {
                                        match column {
                                            Some(c) => builder.copy_from(i, &event.row, *c),
                                            None => builder.set(i, &expr.eval(&event.row)),
                                        }
                                    }
                                    event.row = builder.finish();
                                }
                                session.give(event);
                            }
                        }
                    });
                }
            },
        )
    }
}
