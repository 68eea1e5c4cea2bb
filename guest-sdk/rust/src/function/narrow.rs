//! The narrow operators' stages: `map`, `flat_map`, `filter`,
//! `map_partitions`.

use std::rc::Rc;

use super::emit::{Emitter, FlatMapViewSink, Viewed};
use super::{
    BATCH, ChainFn, ErasedSink, Function, OutputSlot, Sink, encoder, erase, feed, unerase,
};
use crate::bindings::sluice::plugin::types::Rows;
use crate::codec::Data;
use crate::runtime::enter_stage;

/// Makes a stage's sink from its downstream sink and its index in the chain.
type MakeSink<T, U> = dyn Fn(Box<dyn Sink<U>>, usize) -> Box<dyn Sink<T>>;

/// A narrow operator (`map`, `flat_map`, `filter`, `map_partitions`): how
/// to make its sink for a pipeline.
pub(crate) struct NarrowFn<T, U> {
    make: Box<MakeSink<T, U>>,
}

impl<T: Data, U: Data> NarrowFn<T, U> {
    fn boxed(make: impl Fn(Box<dyn Sink<U>>, usize) -> Box<dyn Sink<T>> + 'static) -> Function {
        Function::Narrow(Box::new(Self {
            make: Box::new(make),
        }))
    }

    /// One record out per record in.
    pub(crate) fn map(f: impl Fn(T) -> U + 'static) -> Function {
        let f = Rc::new(f);
        Self::boxed(move |down, stage| {
            Box::new(MapSink {
                f: Rc::clone(&f),
                out: Vec::new(),
                down,
                stage,
            })
        })
    }

    /// Any number of records out per record in.
    pub(crate) fn flat_map<I>(f: impl Fn(T) -> I + 'static) -> Function
    where
        I: IntoIterator<Item = U>,
    {
        let f = Rc::new(f);
        Self::boxed(move |down, stage| {
            Box::new(FlatMapSink {
                f: Rc::clone(&f),
                out: Vec::new(),
                down,
                stage,
            })
        })
    }

    /// Any number of records out per record in, the function taking a
    /// borrowed view of each record and emitting into an [`Emitter`]
    /// (`emit.rs`). `node` is the stage's node.
    pub(crate) fn flat_map_view<F>(node: &str, f: F) -> Function
    where
        T: Viewed,
        F: Fn(&T::View, &mut Emitter<U>) + 'static,
    {
        let f = Rc::new(f);
        let node: Rc<str> = node.into();
        Self::boxed(move |down, stage| {
            Box::new(FlatMapViewSink::<T, F, U>::new(
                Rc::clone(&f),
                down,
                stage,
                Rc::clone(&node),
            ))
        })
    }

    /// The whole partition at once.
    pub(crate) fn map_partitions(f: impl Fn(Vec<T>) -> Vec<U> + 'static) -> Function {
        let f = Rc::new(f);
        Self::boxed(move |down, stage| {
            Box::new(MapPartitionsSink {
                f: Rc::clone(&f),
                buffer: Vec::new(),
                down,
                stage,
            })
        })
    }
}

impl<T: Data> NarrowFn<T, T> {
    /// The records for which `f` is true.
    pub(crate) fn filter(f: impl Fn(&T) -> bool + 'static) -> Function {
        let f = Rc::new(f);
        Self::boxed(move |down, stage| {
            Box::new(FilterSink {
                f: Rc::clone(&f),
                down,
                stage,
            })
        })
    }
}

impl<T: Data, U: Data> ChainFn for NarrowFn<T, U> {
    fn input_codec(&self) -> String {
        T::codec()
    }

    fn compose(&self, downstream: ErasedSink, stage: usize) -> Option<ErasedSink> {
        let downstream = unerase::<U>(downstream)?;
        Some(erase((self.make)(downstream, stage)))
    }

    fn compose_last(&self, slot: OutputSlot, input: &Rows, stage: usize) -> ErasedSink {
        self.compose(encoder::<U>(slot, input), stage)
            .expect("a stage takes what its own encoder takes")
    }

    fn feed(&self, input: &Rows, head: ErasedSink, node: &str) -> Result<(), String> {
        feed::<T>(input, head, node)
    }
}

struct MapSink<F, U> {
    f: Rc<F>,
    /// The batch being passed on.
    out: Vec<U>,
    down: Box<dyn Sink<U>>,
    stage: usize,
}

impl<T: Data, U: Data, F: Fn(T) -> U> Sink<T> for MapSink<F, U> {
    fn push(&mut self, item: T) -> Result<(), String> {
        enter_stage(self.stage);
        let out = (self.f)(item);
        self.down.push(out)
    }

    fn push_batch(&mut self, items: &mut Vec<T>) -> Result<(), String> {
        enter_stage(self.stage);
        self.out.extend(items.drain(..).map(&*self.f));
        self.down.push_batch(&mut self.out)
    }

    fn finish(&mut self) -> Result<(), String> {
        self.down.finish()
    }
}

struct FlatMapSink<F, U> {
    f: Rc<F>,
    /// The batch being filled.
    out: Vec<U>,
    down: Box<dyn Sink<U>>,
    stage: usize,
}

impl<T: Data, U: Data, I, F> Sink<T> for FlatMapSink<F, U>
where
    F: Fn(T) -> I,
    I: IntoIterator<Item = U>,
{
    fn push(&mut self, item: T) -> Result<(), String> {
        enter_stage(self.stage);
        for out in (self.f)(item) {
            self.down.push(out)?;
            // The iterator may run user code too.
            enter_stage(self.stage);
        }
        Ok(())
    }

    fn push_batch(&mut self, items: &mut Vec<T>) -> Result<(), String> {
        enter_stage(self.stage);
        for item in items.drain(..) {
            for out in (self.f)(item) {
                self.out.push(out);
                if self.out.len() == BATCH {
                    self.down.push_batch(&mut self.out)?;
                    // The iterator may run user code too.
                    enter_stage(self.stage);
                }
            }
        }
        if self.out.is_empty() {
            Ok(())
        } else {
            self.down.push_batch(&mut self.out)
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        self.down.finish()
    }
}

struct FilterSink<F, T> {
    f: Rc<F>,
    down: Box<dyn Sink<T>>,
    stage: usize,
}

impl<T: Data, F: Fn(&T) -> bool> Sink<T> for FilterSink<F, T> {
    fn push(&mut self, item: T) -> Result<(), String> {
        enter_stage(self.stage);
        if (self.f)(&item) {
            self.down.push(item)
        } else {
            Ok(())
        }
    }

    fn push_batch(&mut self, items: &mut Vec<T>) -> Result<(), String> {
        enter_stage(self.stage);
        items.retain(&*self.f);
        self.down.push_batch(items)
    }

    fn finish(&mut self) -> Result<(), String> {
        self.down.finish()
    }
}

struct MapPartitionsSink<F, T, U> {
    f: Rc<F>,
    buffer: Vec<T>,
    down: Box<dyn Sink<U>>,
    stage: usize,
}

impl<T: Data, U: Data, F: Fn(Vec<T>) -> Vec<U>> Sink<T> for MapPartitionsSink<F, T, U> {
    fn push(&mut self, item: T) -> Result<(), String> {
        self.buffer.push(item);
        Ok(())
    }

    fn push_batch(&mut self, items: &mut Vec<T>) -> Result<(), String> {
        self.buffer.append(items);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        enter_stage(self.stage);
        let mut out = (self.f)(std::mem::take(&mut self.buffer));
        let bytes = out.iter().map(Data::encoded_size_hint).sum();
        self.down.size_hint(out.len(), bytes);
        self.down.push_batch(&mut out)?;
        self.down.finish()
    }
}
