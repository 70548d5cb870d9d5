import { generator } from '../mixer/seeded-random.ts';

/**
 * Seeded, readable English for the demo's inputs: alt-text-like captions and web pages or encyclopedia articles of
 * several paragraphs, so that token counts, packing and the loss curve look like real data rather than word salad.
 */
const ADJECTIVES = ['red', 'old', 'quiet', 'busy', 'small', 'wooden', 'bright', 'narrow', 'ancient', 'modern', 'snowy', 'green', 'crowded', 'empty', 'golden'];
const THINGS = [
  'bicycle',
  'bridge',
  'market',
  'lighthouse',
  'train station',
  'garden',
  'harbour',
  'church',
  'farmhouse',
  'bookshop',
  'tram',
  'fountain',
  'windmill',
  'castle',
  'cafe',
];
const PLACES = [
  'in the old town',
  'by the river',
  'on a hill above the lake',
  'at the edge of the forest',
  'near the main square',
  'along the coast',
  'in a mountain village',
  'under a grey sky',
];
const TIMES = ['at dusk', 'in the morning light', 'after the rain', 'in early spring', 'on a winter evening', 'at noon', 'during the festival'];
const PEOPLE = ['a woman', 'two children', 'an old man', 'a group of tourists', 'a cyclist', 'a street musician', 'a family'];
const ACTIONS = ['walking past', 'standing in front of', 'taking a photo of', 'waiting near', 'sitting beside', 'painting'];
const TOPICS = ['history', 'architecture', 'transport', 'economy', 'culture', 'geography', 'climate'];
const CITIES = ['Lindenberg', 'Porto Vecchio', 'Kastelruth', 'Saint-Amand', 'Eastbridge', 'Valmora', 'Nordhavn', 'Ostrava Nova'];

export class TextGenerator {
  private readonly next: () => number;

  constructor(seed: number) {
    this.next = generator(seed, 0x7e47);
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }

  private int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** An image caption, as alt texts and dataset captions read: 5 to 25 words. */
  caption(): string {
    const thing = `${this.pick(ADJECTIVES)} ${this.pick(THINGS)}`;
    switch (this.int(0, 3)) {
      case 0:
        return `A ${thing} ${this.pick(PLACES)} ${this.pick(TIMES)}`;
      case 1:
        return `${capital(this.pick(PEOPLE))} ${this.pick(ACTIONS)} a ${thing} ${this.pick(PLACES)}`;
      case 2:
        return `Close-up of a ${thing}, photographed ${this.pick(TIMES)}`;
      default:
        return `The ${thing} of ${this.pick(CITIES)} ${this.pick(PLACES)}, seen from across the street ${this.pick(TIMES)}`;
    }
  }

  /** One sentence of an article about a town. */
  sentence(city: string): string {
    const thing = `${this.pick(ADJECTIVES)} ${this.pick(THINGS)}`;
    switch (this.int(0, 4)) {
      case 0:
        return `The ${thing} of ${city} was built in ${this.int(1120, 1960)} and restored in ${this.int(1961, 2022)}.`;
      case 1:
        return `Visitors often come ${this.pick(TIMES)} to see the ${thing} ${this.pick(PLACES)}.`;
      case 2:
        return `In ${this.int(1700, 2020)}, about ${this.int(2, 90) * 1000} people lived in ${city}, most of them ${this.pick(PLACES)}.`;
      case 3:
        return (
          `Its ${this.pick(TOPICS)} owes much to the ${thing}, which ${this.pick(PEOPLE)} still ${this.pick(['visits', 'describes', 'remembers'])} ` + `fondly.`
        );
      default:
        return `A ${thing} stands ${this.pick(PLACES)}, and ${this.pick(PEOPLE)} can be seen ${this.pick(ACTIONS)} it ${this.pick(TIMES)}.`;
    }
  }

  /** A paragraph of 2 to 6 sentences. */
  paragraph(city: string): string {
    return Array.from({ length: this.int(2, 6) }, () => this.sentence(city)).join(' ');
  }

  city(): string {
    return this.pick(CITIES);
  }

  /** A section heading of an encyclopedia article. */
  heading(): string {
    return capital(this.pick(TOPICS));
  }

  /** A whole number in [min, max]. */
  between(min: number, max: number): number {
    return this.int(min, max);
  }
}

function capital(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
