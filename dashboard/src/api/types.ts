import type { components } from "./schema.gen";

type Schemas = components["schemas"];
export type TraceSummary = Schemas["TraceSummary"];
export type SkeletonSpan = Schemas["SkeletonSpan"];
export type TraceSkeleton = Schemas["TraceSkeleton"];
export type SpanDetail = Schemas["SpanDetail"];
export type GenAIEvent = Schemas["GenAIEvent"];
export type SpanEvaluation = Schemas["SpanEvaluation"];
export type Breach = Schemas["Breach"];
export type Evaluation = Schemas["Evaluation"];
export type CostFigures = Schemas["CostFigures"];
export type CostStats = Schemas["CostStats"];
export type LatencyStats = Schemas["LatencyStats"];
export type EvaluationStats = Schemas["EvaluationStats"];
export type Threshold = Schemas["Threshold"];
